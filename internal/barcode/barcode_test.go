package barcode

import (
	"bytes"
	"image"
	_ "image/png"
	"strings"
	"testing"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/oned"
	gzqr "github.com/makiuchi-d/gozxing/qrcode"
)

func decodePNG(t *testing.T, b []byte, oneD bool) string {
	t.Helper()
	img, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	var r gozxing.Reader = gzqr.NewQRCodeReader()
	if oneD {
		r = oned.NewCode128Reader()
	}
	res, err := r.Decode(bmp, nil)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return res.GetText()
}

// TestQRScans: the PNGs decode back to the text, non-ASCII included (an
// independent decoder stands in for a phone camera).
func TestQRScans(t *testing.T) {
	for _, text := range []string{
		"00020101021126500016org.civstack.pay0101M0236a7f3c2a1-3d1b-4c6e-9a55-1c1b7c1e5d005204581453039785802IT5918Li's Dumpling Cart6007Bologna6304ABCD",
		"00020101021229300012D156000000000510A93FO3230Q31280012D15600000001030812345678520441115802CN5914BEST TRANSPORT6007BEIJING64200002ZH0104最佳运输0202北京540523.7253031565502016233030412340603***0708A60086670902ME91320016A0112233449988770708123456786304A13A",
	} {
		s, err := QR(text)
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.PNG(6)
		if err != nil {
			t.Fatal(err)
		}
		if got := decodePNG(t, b, false); got != text {
			t.Errorf("scanned %q, want %q", got, text)
		}
		svg := s.SVG("QR <code>")
		if !strings.HasPrefix(svg, "<svg") || !strings.Contains(svg, "QR &lt;code&gt;") || !strings.Contains(svg, "M4 4h7") {
			t.Errorf("svg does not start with the finder pattern: %.200s", svg)
		}
	}
}

func TestCode128Scans(t *testing.T) {
	code := "880123456751234567"
	s, err := Code128(code)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.PNG(3)
	if err != nil {
		t.Fatal(err)
	}
	if got := decodePNG(t, b, true); got != code {
		t.Errorf("scanned %q, want %q", got, code)
	}
}
