package exchange

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// TestCheckValue: a holder's values are refused unless they are what
// their field's type says, in the form a person reading the release
// expects (a number in decimal digits, not NaN, an infinity or a hex
// float).
func TestCheckValue(t *testing.T) {
	cases := []struct {
		typ, value string
		ok         bool
	}{
		{"number", "41250", true}, {"number", "-3.5", true}, {"number", "+2", true}, {"number", "1e6", true},
		{"number", "0.50", true}, {"number", ".5", true}, {"number", "5.", true},
		{"number", "NaN", false}, {"number", "Inf", false}, {"number", "-infinity", false},
		{"number", "0x1p-2", false}, {"number", "1_000", false}, {"number", "1e400", false},
		{"number", "", false}, {"number", " 5", false}, {"number", "5 ", false}, {"number", "a lot", false}, {"number", "1,5", false},
		{"date", "2026-12-05", true}, {"date", "2026-02-30", false}, {"date", "05.12.2026", false}, {"date", "", false},
		{"bool", "true", true}, {"bool", "false", true}, {"bool", "yes", false}, {"bool", "TRUE", false},
		{"text", "Via Zamboni 33, Bologna", true}, {"text", "", true}, {"text", strings.Repeat("é", 1000), true},
		{"text", strings.Repeat("é", 1001), false}, {"text", "a\xffb", false},
		{"text", "Via Zamboni 33\r\n\t40126", true}, {"text", "a\x00b", false}, {"text", "a\x1bb", false}, {"text", "a\u0085b", false},
	}
	for _, c := range cases {
		err := checkValue(Field{Name: "f", Label: "Field", Type: c.typ}, c.value)
		if (err == nil) != c.ok {
			t.Errorf("%s %q: %v, want ok=%v", c.typ, c.value, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "Field") {
			t.Errorf("%s %q: the error does not name the field: %v", c.typ, c.value, err)
		}
	}
}

// FuzzCheckValue: a holder's value, of any type, never panics the check,
// and what it accepts is what the type says.
func FuzzCheckValue(f *testing.F) {
	for _, s := range []string{"41250", "-3.5", "NaN", "0x1p-2", "1e400", "2026-12-05", "true", "\xff", ""} {
		f.Add("number", s)
	}
	f.Add("date", "2026-12-05")
	f.Add("bool", "false")
	f.Add("text", "x")
	f.Fuzz(func(t *testing.T, typ, v string) {
		if checkValue(Field{Name: "f", Label: "Field", Type: typ}, v) != nil {
			return
		}
		if !utf8.ValidString(v) || utf8.RuneCountInString(v) > 1000 || strings.ContainsFunc(v, func(r rune) bool { return unicode.IsControl(r) && !strings.ContainsRune("\r\n\t", r) }) {
			t.Fatalf("accepted %q", v)
		}
		switch typ {
		case "number":
			n, err := strconv.ParseFloat(v, 64)
			if err != nil || math.IsNaN(n) || math.IsInf(n, 0) || strings.ContainsAny(v, "xXnN_ \t") {
				t.Fatalf("accepted %q as a number", v)
			}
		case "date":
			if _, err := time.Parse(time.DateOnly, v); err != nil {
				t.Fatalf("accepted %q as a date", v)
			}
		case "bool":
			if v != "true" && v != "false" {
				t.Fatalf("accepted %q as true or false", v)
			}
		}
	})
}
