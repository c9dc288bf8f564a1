package text

import (
	"testing"
	"unicode"
)

// TestReorders: exactly the nine embedding, override and isolate
// characters of Unicode's Bidi_Control property; its three marks are not.
func TestReorders(t *testing.T) {
	var got, marks []rune
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if Reorders(r) {
			got = append(got, r)
			if !unicode.Is(unicode.Bidi_Control, r) {
				t.Errorf("%U is not a bidirectional control", r)
			}
		} else if unicode.Is(unicode.Bidi_Control, r) {
			marks = append(marks, r)
		}
	}
	if len(got) != 9 {
		t.Errorf("%d characters reorder, want 9: %U", len(got), got)
	}
	if want := []rune{'\u061c', '\u200e', '\u200f'}; len(marks) != 3 || marks[0] != want[0] || marks[1] != want[1] || marks[2] != want[2] {
		t.Errorf("the controls left are %U, want ALM, LRM and RLM", marks)
	}
}

func TestLine(t *testing.T) {
	for s, want := range map[string][2]bool{ // Line, Lines
		"":                         {true, true},
		"Amira Haddad":             {true, true},
		"\u200fأميرة حداد":         {true, true},
		"Реестр записей":           {true, true},
		"two\nlines":               {false, true},
		"a\ttab":                   {false, true},
		"a\r\nCRLF":                {false, false},
		"NUL\x00":                  {false, false},
		"\x1b[2Kvalid":             {false, false},
		"next line\u0085":          {false, false},
		"\u202eevil":               {false, false},
		"\u2066isolated\u2069":     {false, false},
		"bad \xff UTF-8":           {false, false},
		"line\u2028separator":      {false, false},
		"paragraph\u2029separator": {false, false},
		"no-break\u00a0space":      {true, true},
	} {
		if got := [2]bool{Line(s), Lines(s)}; got != want {
			t.Errorf("%q: Line, Lines = %v, want %v", s, got, want)
		}
	}
}

// FuzzLine: what Line takes Lines takes too, and neither takes a string
// holding a control character (but Lines' line feed and tab), a line or
// paragraph separator (Unicode's categories Zl and Zp) or one that
// Reorders.
func FuzzLine(f *testing.F) {
	for _, s := range []string{"", "a\nb", "\u202e", "\xff", "Ж\t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		line, lines := Line(s), Lines(s)
		if line && !lines {
			t.Fatalf("%q: a Line but not Lines", s)
		}
		for _, r := range s {
			if line && (unicode.IsControl(r) || Reorders(r) || unicode.In(r, unicode.Zl, unicode.Zp)) || lines && (unicode.IsControl(r) && r != '\n' && r != '\t' || Reorders(r) || unicode.In(r, unicode.Zl, unicode.Zp)) {
				t.Fatalf("%q taken with %U", s, r)
			}
		}
	})
}

// TestControl: the control characters and the whole of Unicode's line and
// paragraph separator categories, and nothing else.
func TestControl(t *testing.T) {
	n := 0
	for r := rune(0); r <= unicode.MaxRune; r++ {
		want := unicode.IsControl(r) || unicode.In(r, unicode.Zl, unicode.Zp)
		if Control(r) != want {
			t.Errorf("Control(%U) = %v, want %v", r, !want, want)
		}
		if want {
			n++
		}
	}
	if n != 67 { // C0 (32), DEL, C1 (32), U+2028, U+2029
		t.Errorf("%d Controls, want 67", n)
	}
}

func TestNewlines(t *testing.T) {
	for in, want := range map[string]string{
		"":                          "",
		"one\r\ntwo\r\n":            "one\ntwo\n",
		"copied\u2028line\u2029end": "copied\nline\nend",
		"lone\rCR":                  "lone\rCR",
		"\r\r\n\n":                  "\r\n\n",
		"Ж\u2028":                   "Ж\n",
	} {
		got := Newlines(in)
		if got != want {
			t.Errorf("Newlines(%q) = %q, want %q", in, got, want)
		}
		if Lines(in) && !Lines(got) {
			t.Errorf("%q is Lines, %q is not", in, got)
		}
	}
}

// TestFault: the first fault a text has, in the order the callers name
// them: not UTF-8, then a control character, then a reordering one.
func TestFault(t *testing.T) {
	for s, want := range map[string][2]Fault{ // LineFault, LinesFault
		"":                {None, None},
		"Amira":           {None, None},
		"\xff\n\u202e":    {NotUTF8, NotUTF8},
		"a\nb":            {HasControl, None},
		"a\n\u202eb":      {HasControl, HasReorder},
		"a\rb\u202e":      {HasControl, HasControl},
		"\u2066a\u2069":   {HasReorder, HasReorder},
		"one\u2028two":    {HasControl, HasControl},
		"\u200fحداد\ttab": {HasControl, None},
	} {
		if got := [2]Fault{LineFault(s), LinesFault(s)}; got != want {
			t.Errorf("%q: LineFault, LinesFault = %v, want %v", s, got, want)
		}
	}
}
