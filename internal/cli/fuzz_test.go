package cli

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func FuzzPublicURL(f *testing.F) {
	for _, s := range []string{"", "http://localhost:8080", "https://civstack.example.org", "http://127.0.0.1", "ftp://x", "https://a/b", "::::", "https://[::1]:443"} {
		f.Add(s, "127.0.0.1:8080", false)
	}
	f.Fuzz(func(t *testing.T, raw, addr string, tlsOn bool) {
		u, err := publicURL(raw, addr, tlsOn)
		if err != nil {
			return
		}
		if u.Host == "" || net.ParseIP(u.Hostname()) != nil || (u.Scheme != "http" && u.Scheme != "https") {
			t.Fatalf("publicURL(%q, %q) = %v", raw, addr, u)
		}
	})
}

// FuzzVerifySums: whatever a backup's SHA256SUMS says, verifySums never
// panics, never reads outside the backup, and passes only when every line
// it read names a file of the backup with that digest.
func FuzzVerifySums(f *testing.F) {
	good := sha256.Sum256([]byte("key"))
	f.Add(hex.EncodeToString(good[:]) + "  keys/a.pem\n")
	f.Add(hex.EncodeToString(good[:]) + "  ../outside\n")
	f.Add(hex.EncodeToString(good[:]) + "  /etc/passwd\n")
	f.Add("")
	f.Add("xyz  keys/a.pem\n\n")
	dir := f.TempDir()
	os.MkdirAll(filepath.Join(dir, "backup", "keys"), 0o700)
	os.WriteFile(filepath.Join(dir, "backup", "keys", "a.pem"), []byte("key"), 0o600)
	os.WriteFile(filepath.Join(dir, "outside"), []byte("key"), 0o600)
	f.Fuzz(func(t *testing.T, sums string) {
		backup := filepath.Join(dir, "backup")
		if err := os.WriteFile(filepath.Join(backup, "SHA256SUMS"), []byte(sums), 0o600); err != nil {
			t.Fatal(err)
		}
		n, err := verifySums(backup)
		if err != nil {
			return
		}
		if n == 0 || strings.Contains(sums, "..") || strings.Contains(sums, "  /") {
			t.Fatalf("verifySums(%q) = %d, nil", sums, n)
		}
	})
}

// FuzzExtractTar: whatever archive an encrypted backup holds, extractTar
// never panics and never writes outside the directory it was given.
func FuzzExtractTar(f *testing.F) {
	var good bytes.Buffer
	tw := tar.NewWriter(&good)
	for _, name := range []string{"civstack.db", "keys/log-1.pem", "SHA256SUMS"} {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: 3, Typeflag: tar.TypeReg})
		tw.Write([]byte("abc"))
	}
	tw.Close()
	f.Add(good.Bytes())
	var bad bytes.Buffer
	tw = tar.NewWriter(&bad)
	tw.WriteHeader(&tar.Header{Name: "../escape", Mode: 0o600, Size: 1, Typeflag: tar.TypeReg})
	tw.Write([]byte("x"))
	tw.WriteHeader(&tar.Header{Name: "link", Linkname: "/etc/passwd", Typeflag: tar.TypeSymlink})
	tw.Close()
	f.Add(bad.Bytes())
	f.Add([]byte{})
	root := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		parent, err := os.MkdirTemp(root, "x")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(parent)
		dir := filepath.Join(parent, "in")
		os.Mkdir(dir, 0o700)
		extractTar(bytes.NewReader(b), dir)
		entries, _ := os.ReadDir(parent)
		if len(entries) != 1 || entries[0].Name() != "in" {
			t.Fatalf("the archive wrote beside its directory: %v", entries)
		}
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type()&fs.ModeSymlink != 0 {
				t.Fatalf("a link was written: %s", p)
			}
			return nil
		})
	})
}

// FuzzPrintable: whatever a document, pass or error holds, what the
// terminal gets has no control character or bidirectional override, and
// text without them is shown as it is.
func FuzzPrintable(f *testing.F) {
	for _, s := range []string{"", "Amira Haddad", "a\nb", "\x1b[2K\rvalid", "\u202eevil", "\xff\xfe", "Ünïcödé\t", "para\u2029graph"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p := printable(s)
		if strings.ContainsFunc(p, unprintable) {
			t.Fatalf("printable(%q) = %q", s, p)
		}
		if !strings.ContainsFunc(s, unprintable) && p != s {
			t.Fatalf("printable(%q) = %q, changed plain text", s, p)
		}
	})
}
