package dcc

import (
	"fmt"
	"strings"
)

// base45Alphabet is RFC 9285's alphabet, in value order.
const base45Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"

var base45Value [256]int8

func init() {
	for i := range base45Value {
		base45Value[i] = -1
	}
	for i := 0; i < len(base45Alphabet); i++ {
		base45Value[base45Alphabet[i]] = int8(i)
	}
}

// Base45Encode encodes b as RFC 9285 base45: each two bytes become three
// characters (least significant first), a trailing byte two.
func Base45Encode(b []byte) string {
	var sb strings.Builder
	sb.Grow((len(b)/2)*3 + 2)
	for i := 0; i+1 < len(b); i += 2 {
		n := int(b[i])<<8 | int(b[i+1])
		sb.WriteByte(base45Alphabet[n%45])
		sb.WriteByte(base45Alphabet[(n/45)%45])
		sb.WriteByte(base45Alphabet[n/2025])
	}
	if len(b)%2 == 1 {
		n := int(b[len(b)-1])
		sb.WriteByte(base45Alphabet[n%45])
		sb.WriteByte(base45Alphabet[n/45])
	}
	return sb.String()
}

// Base45Decode decodes RFC 9285 base45. It refuses characters outside the
// alphabet, a length of 1 modulo 3, a triplet above 65535 and a final pair
// above 255, naming the position.
func Base45Decode(s string) ([]byte, error) {
	if len(s)%3 == 1 {
		return nil, fmt.Errorf("base45: length %d leaves one character over", len(s))
	}
	out := make([]byte, 0, len(s)/3*2+1)
	for i := 0; i < len(s); i += 3 {
		end := min(i+3, len(s))
		n := 0
		mul := 1
		for j := i; j < end; j++ {
			v := base45Value[s[j]]
			if v < 0 {
				return nil, fmt.Errorf("base45: character %d (%q) is not in the alphabet", j+1, s[j])
			}
			n += int(v) * mul
			mul *= 45
		}
		if end-i == 3 {
			if n > 0xFFFF {
				return nil, fmt.Errorf("base45: characters %d-%d encode %d, above 65535", i+1, end, n)
			}
			out = append(out, byte(n>>8), byte(n))
		} else {
			if n > 0xFF {
				return nil, fmt.Errorf("base45: final characters encode %d, above 255", n)
			}
			out = append(out, byte(n))
		}
	}
	return out, nil
}
