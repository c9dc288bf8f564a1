// Package text holds what civstack refuses in the short texts people and
// organisations write (names, reasons, legal bases, claims) that others
// read on a page, a receipt or a terminal.
package text

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Reorders reports whether r is a bidirectional embedding, override or
// isolate (U+202A–U+202E, U+2066–U+2069): a character whose effect runs on
// past itself, so that a name holding one reads otherwise than it is
// written ("Trojan Source", CVE-2021-42574). The marks LRM, RLM and ALM are
// not: right-to-left names use them, and they move only their neighbours.
func Reorders(r rune) bool {
	return r >= '\u202a' && r <= '\u202e' || r >= '\u2066' && r <= '\u2069'
}

// Control reports whether r is a control character (a line feed, a NUL,
// an escape sequence's ESC, NEL) or one of Unicode's two line breaks that
// are not: U+2028 LINE SEPARATOR and U+2029 PARAGRAPH SEPARATOR, which
// end a line wherever the Unicode line-breaking rules are followed.
func Control(r rune) bool {
	return unicode.IsControl(r) || r == '\u2028' || r == '\u2029'
}

// A Fault is what keeps a text from being a Line (or Lines), for a caller
// that says which in its error.
type Fault int

// The faults, in the order LineFault and LinesFault look for them.
const (
	None       Fault = iota
	NotUTF8          // not valid UTF-8 (PostgreSQL stores nothing else)
	HasControl       // a Control (for Lines, one but a line feed or tab)
	HasReorder       // a character that Reorders
)

// LineFault is the first fault of s as one line of text, or None.
func LineFault(s string) Fault { return fault(s, Control) }

// LinesFault is LineFault for text that may run over lines: line feeds
// and tabs are the only Controls it may hold, so that its lines break in
// one way only.
func LinesFault(s string) Fault {
	return fault(s, func(r rune) bool { return Control(r) && r != '\n' && r != '\t' })
}

func fault(s string, control func(rune) bool) Fault {
	switch {
	case !utf8.ValidString(s):
		return NotUTF8
	case strings.ContainsFunc(s, control):
		return HasControl
	case strings.ContainsFunc(s, Reorders):
		return HasReorder
	}
	return None
}

// Line reports whether s is one line of text that reads as written: valid
// UTF-8, nothing that is a Control and nothing that Reorders.
func Line(s string) bool { return LineFault(s) == None }

// Lines is Line for text that may run over lines (LinesFault).
func Lines(s string) bool { return LinesFault(s) == None }

// newlines writes CRLF and the two separators as line feeds.
var newlines = strings.NewReplacer("\r\n", "\n", "\u2028", "\n", "\u2029", "\n")

// Newlines writes as a line feed every line break that a form may send
// for text that runs over lines: CRLF (what a browser sends from a
// textarea) and U+2028 LINE SEPARATOR and U+2029 PARAGRAPH SEPARATOR
// (what some editors leave in text copied from them). A lone carriage
// return stays, and Lines refuses it: it could rewrite a line on a
// terminal.
func Newlines(s string) string { return newlines.Replace(s) }
