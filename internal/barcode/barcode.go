// Package barcode owns how civstack draws machine-readable symbols: QR codes
// (merchant codes, payment codes, credential offers, health passes) and Code
// 128 barcodes (payment codes for laser scanners), as PNG with whole pixels
// per module and a quiet zone, or as SVG drawn from the module grid. The
// symbol encoding itself is github.com/boombuler/barcode's.
package barcode

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"strings"

	bc "github.com/boombuler/barcode"
	"github.com/boombuler/barcode/code128"
	"github.com/boombuler/barcode/qr"
)

// Symbol is an encoded code: a grid of dark and light modules.
type Symbol struct {
	code  bc.Barcode
	quiet int // modules of light margin on each side
	tall  int // Code 128: bar height in modules (QR codes are square)
}

// QR encodes text as a QR code with error correction level M.
func QR(text string) (*Symbol, error) {
	c, err := qr.Encode(text, qr.M, qr.Auto)
	if err != nil {
		return nil, fmt.Errorf("QR code: %w", err)
	}
	return &Symbol{code: c, quiet: 4}, nil
}

// Code128 encodes text as a Code 128 barcode.
func Code128(text string) (*Symbol, error) {
	c, err := code128.Encode(text)
	if err != nil {
		return nil, fmt.Errorf("code 128: %w", err)
	}
	return &Symbol{code: c, quiet: 10, tall: 40}, nil
}

// size is the symbol's grid in modules, without the quiet zone.
func (s *Symbol) size() (int, int) {
	b := s.code.Bounds()
	if s.tall > 0 {
		return b.Dx(), s.tall
	}
	return b.Dx(), b.Dy()
}

func (s *Symbol) dark(x, y int) bool {
	b := s.code.Bounds()
	if s.tall > 0 {
		y = 0
	}
	r, _, _, _ := s.code.At(b.Min.X+x, b.Min.Y+y).RGBA()
	return r < 0x8000
}

// PNG draws the symbol with scale pixels per module.
func (s *Symbol) PNG(scale int) ([]byte, error) {
	if scale < 1 {
		scale = 1
	}
	w, h := s.size()
	img := image.NewGray(image.Rect(0, 0, (w+2*s.quiet)*scale, (h+2*s.quiet)*scale))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	for y := range h {
		for x := range w {
			if !s.dark(x, y) {
				continue
			}
			for dy := range scale {
				for dx := range scale {
					img.SetGray((x+s.quiet)*scale+dx, (y+s.quiet)*scale+dy, color.Gray{})
				}
			}
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// SVG draws the symbol as one path, one unit per module; it scales to any
// size without blurring. title is its accessible name.
func (s *Symbol) SVG(title string) string {
	w, h := s.size()
	W, H := w+2*s.quiet, h+2*s.quiet
	var p strings.Builder
	for y := range h {
		for x := 0; x < w; {
			if !s.dark(x, y) {
				x++
				continue
			}
			run := 1
			for x+run < w && s.dark(x+run, y) {
				run++
			}
			fmt.Fprintf(&p, "M%d %dh%dv1h-%dz", x+s.quiet, y+s.quiet, run, run)
			x += run
		}
	}
	return fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" shape-rendering="crispEdges" role="img"><title>%s</title><rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="%s"/></svg>`,
		W, H, escape(title), W, H, p.String())
}

func escape(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")
	return r.Replace(s)
}
