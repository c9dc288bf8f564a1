package cli

import (
	"crypto/sha256"
	"encoding/hex"
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
