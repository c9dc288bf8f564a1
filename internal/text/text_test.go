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
