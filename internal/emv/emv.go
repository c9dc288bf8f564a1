// Package emv owns civstack's codec for EMVCo Merchant-Presented QR payloads
// (the printed and on-screen codes of Pix, PromptPay, PayNow, UnionPay and
// civstack itself): data objects of a two-digit ID, a two-digit length that
// counts characters (not bytes) and a value; nested templates (26–51, 62, 64,
// 80–99); and the CRC-16/CCITT-FALSE in tag 63 over the UTF-8 bytes of
// everything before it. Parse keeps the fields in their original order, so a
// payload decodes and encodes back to the same text. Which payment scheme a
// merchant account template belongs to is told by its globally unique
// identifier (sub-ID 00).
package emv

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrInvalid wraps every reason a payload is refused.
var ErrInvalid = errors.New("invalid EMV QR payload")

// MaxLen bounds the payloads Parse reads (a QR code holds at most 4,296
// alphanumeric characters; EMV payloads are a few hundred).
const MaxLen = 4096

// Field is one data object. Sub holds the data objects of a template
// (tags 26–51, 62, 64 and 80–99); for other tags it is nil.
type Field struct {
	ID    string  `json:"id"`
	Name  string  `json:"name,omitempty"`
	Value string  `json:"value"`
	Sub   []Field `json:"fields,omitempty"`
}

// Payload is a parsed payload: its fields in their original order, the CRC
// field included.
type Payload struct {
	Fields []Field
}

// IsTemplate reports whether the tag holds nested data objects.
func IsTemplate(id string) bool {
	n, err := strconv.Atoi(id)
	if err != nil || len(id) != 2 {
		return false
	}
	return (n >= 26 && n <= 51) || n == 62 || n == 64 || n >= 80
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Parse reads a payload, checking its structure, every length, the formats
// of the fields EMVCo defines, and its CRC. It does not insist on fields
// that many schemes in use leave out (merchant category, name, city): see
// Notes for those.
func Parse(s string) (*Payload, error) {
	if len(s) > MaxLen {
		return nil, invalid("longer than %d bytes", MaxLen)
	}
	if !utf8.ValidString(s) {
		return nil, invalid("not valid UTF-8 text")
	}
	if s == "" {
		return nil, invalid("empty")
	}
	// The CRC first: a payload whose checksum is wrong was damaged or
	// edited, whatever else is wrong with it.
	if n := len(s); n >= 8 && s[n-8:n-4] == "6304" {
		stated := s[n-4:]
		if want := fmt.Sprintf("%04X", CRC([]byte(s[:n-4]))); strings.ToUpper(stated) != want {
			return nil, invalid("wrong CRC: the payload states %s, its content gives %s", stated, want)
		}
	}
	fields, err := parseObjects([]rune(s), "", 0)
	if err != nil {
		return nil, err
	}
	p := &Payload{Fields: fields}
	if err := p.check(s); err != nil {
		return nil, err
	}
	return p, nil
}

// parseObjects splits rs into data objects; parent is the enclosing tag ("" at
// the top) and offset the position of rs in the whole payload, for messages.
func parseObjects(rs []rune, parent string, offset int) ([]Field, error) {
	var out []Field
	seen := map[string]bool{}
	where := func(pos int) string {
		if parent == "" {
			return fmt.Sprintf("at character %d", offset+pos+1)
		}
		return fmt.Sprintf("inside tag %s at character %d", parent, offset+pos+1)
	}
	for i := 0; i < len(rs); {
		if len(rs)-i < 4 {
			return nil, invalid("%s: %d characters left over, too few for an ID and a length", where(i), len(rs)-i)
		}
		id, lenText := string(rs[i:i+2]), string(rs[i+2:i+4])
		if !digits(id) {
			return nil, invalid("%s: the ID %q is not two digits", where(i), id)
		}
		if !digits(lenText) {
			return nil, invalid("%s: tag %s has length %q, not two digits", where(i), id, lenText)
		}
		n, _ := strconv.Atoi(lenText)
		if n == 0 {
			return nil, invalid("%s: tag %s has length 00 (lengths run from 01 to 99)", where(i), id)
		}
		if i+4+n > len(rs) {
			return nil, invalid("%s: tag %s says %d characters but only %d remain", where(i), id, n, len(rs)-i-4)
		}
		if seen[id] {
			return nil, invalid("%s: tag %s appears twice", where(i), id)
		}
		seen[id] = true
		value := string(rs[i+4 : i+4+n])
		for _, r := range value {
			if unicode.IsControl(r) {
				return nil, invalid("%s: tag %s holds a control character", where(i), id)
			}
		}
		f := Field{ID: id, Value: value}
		if parent == "" {
			f.Name = fieldName(id)
			if IsTemplate(id) {
				sub, err := parseObjects(rs[i+4:i+4+n], id, offset+i+4)
				if err != nil {
					return nil, err
				}
				f.Sub = sub
				for j := range f.Sub {
					f.Sub[j].Name = subName(id, f.Sub[j].ID)
				}
			}
		}
		out = append(out, f)
		i += 4 + n
	}
	return out, nil
}

func digits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// check applies EMVCo's rules to the parsed fields.
func (p *Payload) check(raw string) error {
	fs := p.Fields
	if fs[0].ID != "00" {
		return invalid("the first tag is %s; a payload starts with 00 (payload format indicator)", fs[0].ID)
	}
	if fs[0].Value != "01" {
		return invalid("payload format indicator is %q; only \"01\" is defined", fs[0].Value)
	}
	last := fs[len(fs)-1]
	if last.ID != "63" {
		return invalid("the last tag is %s; a payload ends with 63 (CRC)", last.ID)
	}
	if len([]rune(last.Value)) != 4 {
		return invalid("the CRC in tag 63 has %d characters; it has 4", len([]rune(last.Value)))
	}
	stated := last.Value
	if strings.ToUpper(stated) != stated {
		return invalid("the CRC %q is not in uppercase hexadecimal", stated)
	}
	if _, err := strconv.ParseUint(stated, 16, 16); err != nil {
		return invalid("the CRC %q is not hexadecimal", stated)
	}
	body := raw[:len(raw)-4]
	if want := fmt.Sprintf("%04X", CRC([]byte(body))); want != stated {
		return invalid("wrong CRC: the payload states %s, its content gives %s", stated, want)
	}
	account := false
	for _, f := range fs {
		n, _ := strconv.Atoi(f.ID)
		rl := len([]rune(f.Value))
		switch {
		case n >= 2 && n <= 51:
			account = true
			if n >= 26 && !hasSub(f, "00") {
				return invalid("merchant account template %s has no globally unique identifier (sub-ID 00)", f.ID)
			}
		case f.ID == "01" && f.Value != "11" && f.Value != "12":
			return invalid("point of initiation (tag 01) is %q; it is 11 (static) or 12 (dynamic)", f.Value)
		case f.ID == "52" && (rl != 4 || !digits(f.Value)):
			return invalid("merchant category code (tag 52) %q is not 4 digits", f.Value)
		case f.ID == "53" && (rl != 3 || !digits(f.Value)):
			return invalid("currency (tag 53) %q is not a 3-digit ISO 4217 code", f.Value)
		case f.ID == "54":
			if _, err := ParseAmount(f.Value); err != nil {
				return err
			}
		case f.ID == "55" && f.Value != "01" && f.Value != "02" && f.Value != "03":
			return invalid("tip indicator (tag 55) %q is not 01, 02 or 03", f.Value)
		case f.ID == "58" && (rl != 2 || !isUpperAlpha(f.Value)):
			return invalid("country (tag 58) %q is not a 2-letter ISO 3166 code", f.Value)
		case f.ID == "59" && rl > 25:
			return invalid("merchant name (tag 59) has %d characters; the most is 25", rl)
		case f.ID == "60" && rl > 15:
			return invalid("merchant city (tag 60) has %d characters; the most is 15", rl)
		}
	}
	if !account {
		return invalid("no merchant account information (tags 02–51)")
	}
	return nil
}

func hasSub(f Field, id string) bool {
	for _, s := range f.Sub {
		if s.ID == id {
			return true
		}
	}
	return false
}

func isUpperAlpha(s string) bool {
	for _, r := range s {
		if r < 'A' || r > 'Z' {
			return false
		}
	}
	return true
}

// Notes lists what a conforming payload should carry and this one does not
// (EMVCo marks them mandatory; PromptPay, for one, leaves them out).
func (p *Payload) Notes() []string {
	var out []string
	for _, m := range []struct{ id, what string }{
		{"52", "merchant category code"}, {"53", "transaction currency"}, {"58", "country code"},
		{"59", "merchant name"}, {"60", "merchant city"},
	} {
		if _, ok := p.Get(m.id); !ok {
			out = append(out, fmt.Sprintf("tag %s (%s) is missing; EMVCo makes it mandatory", m.id, m.what))
		}
	}
	if v, ok := p.Get("01"); ok && v == "12" {
		if _, ok := p.Get("54"); !ok {
			out = append(out, "a dynamic code (tag 01 = 12) without an amount (tag 54)")
		}
	}
	return out
}

// Get returns the value of a top-level tag.
func (p *Payload) Get(id string) (string, bool) {
	for _, f := range p.Fields {
		if f.ID == id {
			return f.Value, true
		}
	}
	return "", false
}

// Sub returns the value of sub-ID sub inside template id.
func (p *Payload) Sub(id, sub string) (string, bool) {
	for _, f := range p.Fields {
		if f.ID == id {
			for _, s := range f.Sub {
				if s.ID == sub {
					return s.Value, true
				}
			}
		}
	}
	return "", false
}

// Account is one merchant account template, told apart by its identifier.
type Account struct {
	Tag    string
	GUI    string
	Scheme string // a known scheme's name, or ""
	Fields []Field
}

// Accounts lists the merchant account templates (tags 26–51).
func (p *Payload) Accounts() []Account {
	var out []Account
	for _, f := range p.Fields {
		n, _ := strconv.Atoi(f.ID)
		if n < 26 || n > 51 {
			continue
		}
		a := Account{Tag: f.ID, Fields: f.Sub}
		for _, s := range f.Sub {
			if s.ID == "00" {
				a.GUI = s.Value
			}
		}
		a.Scheme = Scheme(a.GUI)
		out = append(out, a)
	}
	return out
}

// Scheme names the payment scheme of a globally unique identifier, or "".
func Scheme(gui string) string {
	switch g := strings.ToLower(gui); {
	case g == strings.ToLower(CivstackGUI):
		return "civstack"
	case g == "br.gov.bcb.pix":
		return "Pix (Brazil)"
	case g == "a000000677010111", g == "a000000677010112", g == "a000000677010113":
		return "PromptPay (Thailand)"
	case g == "sg.paynow":
		return "PayNow (Singapore)"
	case g == "sg.com.nets":
		return "NETS (Singapore)"
	case strings.HasPrefix(g, "d156"):
		return "UnionPay"
	case strings.HasPrefix(g, "a000000615"):
		return "DuitNow (Malaysia)"
	}
	return ""
}

// Schemes names every scheme the payload offers, in tag order, including
// the scheme-reserved tags 02–25 (Visa, Mastercard, UnionPay…).
func (p *Payload) Schemes() []string {
	var out []string
	for _, f := range p.Fields {
		n, _ := strconv.Atoi(f.ID)
		switch {
		case n >= 2 && n <= 3:
			out = append(out, "Visa")
		case n >= 4 && n <= 5:
			out = append(out, "Mastercard")
		case n >= 6 && n <= 8:
			out = append(out, "EMVCo")
		case n >= 9 && n <= 10:
			out = append(out, "Discover")
		case n >= 11 && n <= 12:
			out = append(out, "Amex")
		case n >= 13 && n <= 14:
			out = append(out, "JCB")
		case n >= 15 && n <= 16:
			out = append(out, "UnionPay")
		case n >= 17 && n <= 25:
			out = append(out, "EMVCo reserved")
		}
	}
	for _, a := range p.Accounts() {
		name := a.Scheme
		if name == "" {
			name = "unknown (" + a.GUI + ")"
		}
		out = append(out, name)
	}
	return out
}

// ParseAmount reads a transaction amount (tag 54: at most 13 characters,
// digits with an optional "." decimal mark) into minor units with two
// decimals.
func ParseAmount(s string) (int64, error) {
	if s == "" || len(s) > 13 {
		return 0, invalid("amount (tag 54) %q is not 1 to 13 characters", s)
	}
	whole, frac, dot := strings.Cut(s, ".")
	if !digits(whole) || (dot && frac != "" && !digits(frac)) || len(frac) > 2 {
		return 0, invalid("amount (tag 54) %q is not a number with at most two decimals", s)
	}
	for len(frac) < 2 {
		frac += "0"
	}
	n, err := strconv.ParseInt(whole+frac, 10, 64)
	if err != nil {
		return 0, invalid("amount (tag 54) %q is too large", s)
	}
	return n, nil
}

// FormatAmount writes minor units with two decimals, as tag 54 carries them.
func FormatAmount(cents int64) string {
	return fmt.Sprintf("%d.%02d", cents/100, cents%100)
}
