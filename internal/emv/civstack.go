package emv

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// CivstackGUI identifies civstack's merchant account template.
const CivstackGUI = "org.civstack.pay"

// ErrForeign is returned by Civstack for a valid payload of another scheme.
var ErrForeign = errors.New("not a civstack merchant")

// Party says who a civstack code pays.
type Party string

// The parties a code can name.
const (
	PartyMerchant Party = "M" // a merchant organisation
	PartyPerson   Party = "P" // a person's receive code
)

// Civstack is what civstack's template (sub-IDs of a tag 26–51 whose
// identifier is CivstackGUI) carries:
//
//	00 org.civstack.pay
//	01 party: M merchant, P person
//	02 the merchant's organisation id, or the person's receive handle
//	03 sale id (dynamic codes only)
//	04 sale expiry, YYYYMMDDhhmmss UTC (dynamic codes only)
type Civstack struct {
	Party   Party
	ID      string
	Sale    string
	Expires time.Time
}

// Code is a civstack payment code ready to encode.
type Code struct {
	Civstack
	MCC       string // 4 digits; 0000 for persons
	Currency  string // ISO 4217 numeric, e.g. 978
	Amount    int64  // minor units; 0 for static codes
	Country   string // ISO 3166 alpha-2
	Name      string // at most 25 characters
	City      string // at most 15 characters
	Reference string // tag 62 sub-ID 05, at most 25 characters
	Bill      string // tag 62 sub-ID 01
}

// Encode writes the code as an EMV payload: static (tag 01 = 11) without a
// sale, dynamic (12) with one.
func (c Code) Encode() (string, error) {
	initiation := "11"
	if c.Sale != "" {
		initiation = "12"
	}
	tmpl := []Field{{ID: "00", Value: CivstackGUI}, {ID: "01", Value: string(c.Party)}, {ID: "02", Value: c.ID}}
	if c.Sale != "" {
		tmpl = append(tmpl, Field{ID: "03", Value: c.Sale})
		if !c.Expires.IsZero() {
			tmpl = append(tmpl, Field{ID: "04", Value: c.Expires.UTC().Format("20060102150405")})
		}
	}
	fs := []Field{{ID: "00", Value: "01"}, {ID: "01", Value: initiation}, {ID: "26", Sub: tmpl},
		{ID: "52", Value: c.MCC}, {ID: "53", Value: c.Currency}}
	if c.Amount > 0 {
		fs = append(fs, Field{ID: "54", Value: FormatAmount(c.Amount)})
	}
	fs = append(fs, Field{ID: "58", Value: c.Country}, Field{ID: "59", Value: clip(c.Name, 25)}, Field{ID: "60", Value: clip(c.City, 15)})
	var add []Field
	if c.Bill != "" {
		add = append(add, Field{ID: "01", Value: clip(c.Bill, 25)})
	}
	if c.Reference != "" {
		add = append(add, Field{ID: "05", Value: clip(c.Reference, 25)})
	}
	if len(add) > 0 {
		fs = append(fs, Field{ID: "62", Sub: add})
	}
	s, err := Encode(fs)
	if err != nil {
		return "", err
	}
	if _, err := Parse(s); err != nil { // never hand out a code we would refuse
		return "", err
	}
	return s, nil
}

// clip shortens s to n characters.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		return string(r[:n])
	}
	return s
}

// Civstack reads civstack's template. A payload of another scheme gets
// ErrForeign with the scheme's name; a civstack template that is malformed
// gets ErrInvalid.
func (p *Payload) Civstack() (*Civstack, error) {
	var names []string
	for _, a := range p.Accounts() {
		if a.Scheme != "civstack" {
			continue
		}
		c := &Civstack{}
		for _, f := range a.Fields {
			switch f.ID {
			case "01":
				c.Party = Party(f.Value)
			case "02":
				c.ID = f.Value
			case "03":
				c.Sale = f.Value
			case "04":
				t, err := time.Parse("20060102150405", f.Value)
				if err != nil {
					return nil, invalid("civstack template: expiry %q is not YYYYMMDDhhmmss", f.Value)
				}
				c.Expires = t
			}
		}
		if c.Party != PartyMerchant && c.Party != PartyPerson {
			return nil, invalid("civstack template: party %q is not M or P", c.Party)
		}
		if c.ID == "" {
			return nil, invalid("civstack template: no account (sub-ID 02)")
		}
		return c, nil
	}
	for _, s := range p.Schemes() {
		if !contains(names, s) {
			names = append(names, s)
		}
	}
	return nil, fmt.Errorf("this is a %s payment code: %w", strings.Join(names, " / "), ErrForeign)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
