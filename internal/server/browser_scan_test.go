package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/draw"
	"image/png"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/civstack/civstack/internal/conformance"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
	"github.com/civstack/civstack/internal/web"
)

// TestBrowserScanQR scans with the camera in real Chromium at phone width,
// on a browser without BarcodeDetector (as iPhones, Firefox and Chromium on
// Linux are): the camera is Chromium's fake one, filming the street
// vendor's printed QR code (the PNG the point of sale offers, drawn a
// little turned on a grey table). The pay page loads jsQR, reads the code
// from the frames and goes on to the payment's review; before the camera
// starts, jsQR is not loaded.
func TestBrowserScanQR(t *testing.T) {
	if os.Getenv(ChromiumEnv) == "" {
		newBrowser(t) // skips, and says why
	}
	w := startDemo(t, storetest.Engine{Name: "sqlite", Open: func(t testing.TB) store.Options { return store.Options{DataDir: t.TempDir()} }})
	n, li := w.n, w.orgs["Li's Dumpling Cart"]
	r := w.as(t, "Li Wei").get("/pos/" + li + "/qr.png")
	expect(t, "the printed code's PNG", r, 200)
	code, err := png.Decode(bytes.NewReader([]byte(r.body)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := filming(t, n, "Amira Haddad", code, 640, 480, 0.12, true)
	step(t, ctx, "the pay page offers the camera",
		chromedp.Navigate(n.URL+"/wallet/pay"),
		chromedp.WaitVisible(chromedp.CSS("[data-scan-start]")))
	if loaded, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`typeof window.jsQR === "function" || "BarcodeDetector" in window`)); err != nil || loaded {
		t.Fatalf("a QR reader before the camera started (%v)", err)
	}
	step(t, ctx, "scan the vendor's code",
		chromedp.Click(chromedp.CSS("[data-scan-start]")),
		waitText("You pay Li's Dumpling Cart"))
	screenshot(t, ctx, "21a-pay-scanned")
	if loaded, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`typeof window.jsQR === "function"`)); err != nil || !loaded {
		t.Fatalf("the code was read without jsQR (%v)", err)
	}
	step(t, ctx, "pay 2.00 from the scan",
		chromedp.SendKeys(chromedp.ID("amount"), "2.00"),
		chromedp.Click(chromedp.CSS("#confirm-form button[type=submit]")),
		waitText("Paid. Here is your receipt."), waitText("Total 2.00 EUR"))

	// A camera the person refused (headless Chromium refuses when nothing
	// allows it) leaves the paste field, and says so.
	ctx = filming(t, n, "Amira Haddad", code, 640, 480, 0.12, false)
	step(t, ctx, "a refused camera",
		chromedp.Navigate(n.URL+"/wallet/pay"),
		chromedp.Click(chromedp.CSS("[data-scan-start]")),
		waitText("The camera is not available"), waitText("Paste the code's text instead."))
	if again, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!document.querySelector("[data-scan-start]").disabled`)); err != nil || !again {
		t.Fatalf("the camera cannot be tried again (%v)", err)
	}

	// A camera that films no code goes on until the person stops it, and
	// goes off when they leave the page: its light never stays on. (The
	// page's streams are watched, not replaced: each getUserMedia answer is
	// kept in window.streams.)
	blank := image.NewGray(code.Bounds())
	draw.Draw(blank, blank.Bounds(), image.White, image.Point{}, draw.Src)
	ctx = filming(t, n, "Amira Haddad", blank, 640, 480, 0, true)
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `(function () {
		const md = navigator.mediaDevices, get = md.getUserMedia.bind(md);
		window.streams = [];
		md.getUserMedia = async (c) => { const s = await get(c); window.streams.push(s); return s; };
	})();`}); err != nil {
		t.Fatal(err)
	}
	const live = `window.streams.flatMap((s) => s.getTracks()).filter((t) => t.readyState === "live").length`
	step(t, ctx, "film a table with no code",
		chromedp.Navigate(n.URL+"/wallet/pay"),
		chromedp.Click(chromedp.CSS("[data-scan-start]")),
		waitText("Point the camera at the QR code."), waitTrue("a live camera", live+" === 1"),
		chromedp.Sleep(time.Second), waitText("Point the camera at the QR code."))
	screenshot(t, ctx, "21b-pay-camera")
	step(t, ctx, "stop the camera",
		chromedp.Click(chromedp.CSS("[data-scan-stop]")),
		waitTrue("the camera off", live+` === 0 && document.querySelector("[data-scan-video]").hidden && !document.querySelector("[data-scan-start]").hidden`))
	step(t, ctx, "start it again and leave the page by the menu",
		chromedp.Click(chromedp.CSS("[data-scan-start]")),
		waitText("Point the camera at the QR code."), waitTrue("a live camera again", live+" === 1"),
		chromedp.Click(chromedp.CSS(`header a[href="/wallet"]`)),
		waitText("Show payment code"), waitTrue("the camera off after leaving", live+" === 0 && window.streams.length === 2"))

	// A health certificate's larger code (alphanumeric, version 16): an
	// Italian test certificate from the EU's test data, read at a gate. Its
	// signer is not on this node's trust list, so the verdict says so: the
	// code itself was read whole.
	var cert struct {
		Picture string `json:"2DCODE"`
	}
	raw, err := os.ReadFile(conformance.File(t, "dgc-testdata/IT/2DCode/raw/2.json"))
	if err == nil {
		err = json.Unmarshal(raw, &cert)
	}
	var pic []byte
	if err == nil {
		pic, err = base64.StdEncoding.DecodeString(cert.Picture)
	}
	if err != nil {
		t.Fatal(err)
	}
	if code, err = png.Decode(bytes.NewReader(pic)); err != nil {
		t.Fatal(err)
	}
	ctx = filming(t, n, "Jonas Weber", code, 1280, 720, -0.08, true)
	step(t, ctx, "scan the certificate",
		chromedp.Navigate(n.URL+"/verify"),
		chromedp.Click(chromedp.CSS("[data-scan-start]")),
		waitText("Not valid"))
	screenshot(t, ctx, "31a-verify-scanned")
	verdict, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("verdict").innerText`))
	if err != nil || !strings.Contains(verdict, "trust") {
		t.Fatalf("the verdict on the scanned certificate: %q %v", verdict, err)
	}
}

// filming starts Chromium at phone width, signed in as persona, whose
// camera (Chromium's fake one, allowed without asking where allowed) films
// img in a frame of width by height, turned by angle radians. Whatever
// this Chromium has, its pages read codes with jsQR: BarcodeDetector is
// taken away.
func filming(t *testing.T, n *node, persona string, img image.Image, width, height int, angle float64, allowed bool) context.Context {
	t.Helper()
	video := filepath.Join(t.TempDir(), "camera.y4m")
	writeFrame(t, video, img, width, height, angle)
	ctx := newBrowser(t,
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", allowed),
		chromedp.Flag("use-file-for-fake-video-capture", video))
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `delete window.BarcodeDetector;`}); err != nil {
		t.Fatal(err)
	}
	step(t, ctx, "phone-sized screen", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Navigate(n.URL+"/"), waitText("Demo personas"))
	switchTo(t, ctx, n, persona)
	return ctx
}

// writeFrame writes a one-frame YUV4MPEG2 video (what Chromium's fake
// camera plays, over and over) of img on a grey table, turned by angle
// radians, as tall as two thirds of the frame, and as soft as a lens makes
// it (each point blends the four pixels around it).
func writeFrame(t *testing.T, name string, img image.Image, width, height int, angle float64) {
	t.Helper()
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriter(f)
	fmt.Fprintf(bw, "YUV4MPEG2 W%d H%d F30:1 Ip A1:1 C420jpeg\nFRAME\n", width, height)
	b := img.Bounds()
	gray := image.NewGray(b)
	draw.Draw(gray, b, img, b.Min, draw.Src)
	at := func(x, y int) float64 { // paper and ink under room light; the table beyond
		if x < 0 || y < 0 || x >= b.Dx() || y >= b.Dy() {
			return 150
		}
		return 30 + float64(gray.GrayAt(b.Min.X+x, b.Min.Y+y).Y)*190/255
	}
	scale := float64(b.Dx()) / (float64(height) * 2 / 3)
	sin, cos := math.Sincos(angle)
	for y := range height {
		for x := range width {
			// The frame's point, turned back and scaled into the image.
			dx, dy := float64(x)-float64(width)/2, float64(y)-float64(height)/2
			ix := (cos*dx+sin*dy)*scale + float64(b.Dx())/2 - 0.5
			iy := (-sin*dx+cos*dy)*scale + float64(b.Dy())/2 - 0.5
			x0, y0 := int(math.Floor(ix)), int(math.Floor(iy))
			fx, fy := ix-float64(x0), iy-float64(y0)
			luma := (at(x0, y0)*(1-fx)+at(x0+1, y0)*fx)*(1-fy) + (at(x0, y0+1)*(1-fx)+at(x0+1, y0+1)*fx)*fy
			bw.WriteByte(uint8(luma + 0.5))
		}
	}
	bw.Write(bytes.Repeat([]byte{128}, width*height/2)) // no colour: U and V planes
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestBrowserQRReaderConformance: the scanner's reader where the browser
// has none (the vendored jsQR, run in Chromium as the pay and verify pages
// run it: the picture drawn on a canvas, the canvas's pixels read) reads the
// EU DCC test data's QR pictures (dgc-testdata, every country's, from
// ../shared/testdata), each as its PREFIX (the HC1: text). A picture is
// drawn with a quiet zone around it, as a camera would see it printed. It
// reports how many pass, and which fail and why.
func TestBrowserQRReaderConformance(t *testing.T) {
	root := filepath.Dir(conformance.File(t, "dgc-testdata/README.md"))
	ctx := newBrowser(t)
	mux := http.NewServeMux()
	mux.Handle("/static/", web.Static())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><title>reader</title><script src=%q></script>`, web.StaticURL(web.QRReaderFile))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	step(t, ctx, "load the reader", chromedp.Navigate(srv.URL+"/"), waitTrue("jsQR", `typeof window.jsQR === "function"`))

	type picture struct {
		name, png, prefix string
		decodes           bool
	}
	var pics []picture
	files, _ := filepath.Glob(filepath.Join(root, "*", "2DCode", "raw", "*.json"))
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			Picture  string `json:"2DCODE"`
			Prefix   string `json:"PREFIX"`
			Expected struct {
				Decode *bool `json:"EXPECTEDPICTUREDECODE"`
			} `json:"EXPECTEDRESULTS"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if c.Picture == "" || c.Prefix == "" {
			continue
		}
		rel, _ := filepath.Rel(root, f)
		pics = append(pics, picture{filepath.ToSlash(rel), c.Picture, c.Prefix, c.Expected.Decode == nil || *c.Expected.Decode})
	}
	if len(pics) < 300 {
		t.Fatalf("only %d pictures in %s", len(pics), root)
	}
	const read = `(async (b64) => {
		const img = new Image();
		img.src = "data:image/png;base64," + b64;
		await img.decode();
		const pad = Math.round(Math.max(img.width, img.height) / 10), c = document.createElement("canvas");
		c.width = img.width + 2 * pad; c.height = img.height + 2 * pad;
		const cx = c.getContext("2d", { willReadFrequently: true });
		cx.fillStyle = "#fff"; cx.fillRect(0, 0, c.width, c.height);
		cx.drawImage(img, pad, pad);
		const d = cx.getImageData(0, 0, c.width, c.height);
		const code = jsQR(d.data, d.width, d.height, { inversionAttempts: "dontInvert" });
		return code ? code.data : "";
	})`
	passed := 0
	var failed []string
	for _, p := range pics {
		arg, _ := json.Marshal(p.png)
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](read+"("+string(arg)+")", chromedp.EvalAwaitPromise))
		switch {
		case !p.decodes:
			if err == nil && got == p.prefix {
				failed = append(failed, p.name+": read as its text, which the data says no reader can")
			} else {
				passed++ // not a picture of a QR code that reads
			}
		case err != nil:
			failed = append(failed, p.name+": the browser could not draw it ("+err.Error()+")")
		case got == p.prefix:
			passed++
		case got == "":
			failed = append(failed, p.name+": no QR code found")
		default:
			failed = append(failed, fmt.Sprintf("%s: read %d characters that differ from PREFIX's %d", p.name, len(got), len(p.prefix)))
		}
	}
	t.Logf("QR reader (jsQR %s in Chromium): %d of %d dgc-testdata pictures pass", strings.TrimSuffix(strings.TrimPrefix(web.QRReaderFile, "jsQR-"), ".js"), passed, len(pics))
	for _, f := range failed {
		t.Errorf("fails: %s", f)
	}
}
