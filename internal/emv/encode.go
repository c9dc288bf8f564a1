package emv

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Encode writes fields in the order given (templates from their Sub fields,
// when they have any) and appends the CRC. A field 63 in fields is left out:
// the CRC is always computed. It fails on a value of more than 99
// characters or an ID that is not two digits.
func Encode(fields []Field) (string, error) {
	var b strings.Builder
	if err := writeObjects(&b, fields); err != nil {
		return "", err
	}
	b.WriteString("6304")
	return b.String() + fmt.Sprintf("%04X", CRC([]byte(b.String()))), nil
}

func writeObjects(b *strings.Builder, fields []Field) error {
	for _, f := range fields {
		if f.ID == "63" {
			continue
		}
		if len(f.ID) != 2 || !digits(f.ID) {
			return fmt.Errorf("%w: the ID %q is not two digits", ErrInvalid, f.ID)
		}
		value := f.Value
		if len(f.Sub) > 0 {
			var sb strings.Builder
			if err := writeObjects(&sb, f.Sub); err != nil {
				return err
			}
			value = sb.String()
		}
		n := utf8.RuneCountInString(value)
		if n < 1 || n > 99 {
			return fmt.Errorf("%w: tag %s would hold %d characters (1 to 99)", ErrInvalid, f.ID, n)
		}
		fmt.Fprintf(b, "%s%02d%s", f.ID, n, value)
	}
	return nil
}

// String encodes the payload back, recomputing its CRC: for a payload Parse
// accepted, it is the text it was parsed from.
func (p *Payload) String() string {
	s, err := Encode(p.Fields)
	if err != nil {
		return ""
	}
	return s
}
