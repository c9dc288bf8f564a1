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

// Line reports whether s is one line of text that reads as written: valid
// UTF-8 (PostgreSQL stores nothing else), no control character (a line
// break, a NUL, an escape sequence's ESC) and nothing that Reorders.
func Line(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) || Reorders(r) })
}

// Lines is Line for text that may run over lines: line feeds and tabs are
// its only control characters.
func Lines(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' || Reorders(r) })
}
