package cli

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"filippo.io/age"
)

// encryptedName is the one file of an encrypted backup besides SHA256SUMS:
// a tar of what a plain backup holds, encrypted with age. Standard tools
// open it: age -d -i KEY civstack-backup.tar.age | tar -x
const encryptedName = "civstack-backup.tar.age"

// parseRecipients reads age recipients ("age1…"), comma-separated in list
// and one a line in the file named (age's recipients-file format).
func parseRecipients(list, file string) ([]age.Recipient, error) {
	var text strings.Builder
	for r := range strings.SplitSeq(list, ",") {
		if r = strings.TrimSpace(r); r != "" {
			text.WriteString(r + "\n")
		}
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--recipients-file: %w", err)
		}
		text.Write(b)
		text.WriteString("\n")
	}
	if strings.TrimSpace(text.String()) == "" {
		return nil, nil
	}
	rs, err := age.ParseRecipients(strings.NewReader(text.String()))
	if err != nil {
		return nil, fmt.Errorf("%w: the backup's recipients: %v (an age public key such as age1…)", errUsage, err)
	}
	return rs, nil
}

// encryptDir writes the regular files under dir into a tar encrypted to
// recipients, at to (mode 0600, synced).
func encryptDir(dir, to string, recipients []age.Recipient) error {
	f, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = func() error {
		w, err := age.Encrypt(f, recipients...)
		if err != nil {
			return err
		}
		tw := tar.NewWriter(w)
		err = eachFile(dir, func(p, rel string, info fs.FileInfo) error {
			if err := tw.WriteHeader(&tar.Header{Name: filepath.ToSlash(rel), Mode: 0o600, Size: info.Size(), ModTime: info.ModTime(), Typeflag: tar.TypeReg}); err != nil {
				return err
			}
			in, err := os.Open(p)
			if err != nil {
				return err
			}
			defer in.Close()
			_, err = io.Copy(tw, in)
			return err
		})
		if err != nil {
			return err
		}
		if err := tw.Close(); err != nil {
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
		return f.Sync()
	}()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// decryptTo opens an encrypted backup with identities and extracts it into
// dir (which must exist).
func decryptTo(from, dir string, identities []age.Identity) error {
	f, err := os.Open(from)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := age.Decrypt(f, identities...)
	if err != nil {
		var none *age.NoIdentityMatchError
		if errors.As(err, &none) {
			return fmt.Errorf("%s was not encrypted to any key of --identity", from)
		}
		return fmt.Errorf("%s: %w", from, err)
	}
	if err := extractTar(r, dir); err != nil {
		return fmt.Errorf("%s: %w", from, err)
	}
	return nil
}

// extractTar writes a tar's regular files under dir (files 0600,
// directories 0700). A name that would leave dir, an absolute one, a link
// or a device is an error: the archive may come from anywhere.
func extractTar(r io.Reader, dir string) error {
	// A file may not grow past what the archive holds: a sparse entry's
	// holes would otherwise turn a few bytes into terabytes of zeros.
	src := &countingReader{r: r}
	tr := tar.NewReader(src)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("not a backup's archive: %w", err)
		}
		name := path.Clean(h.Name)
		if h.Typeflag == tar.TypeDir {
			continue
		}
		if h.Typeflag != tar.TypeReg || name != h.Name || !fs.ValidPath(name) || name == "." {
			return fmt.Errorf("the archive holds %q, which is not a file a backup holds", h.Name)
		}
		to := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
			return err
		}
		out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(&boundedWriter{w: out, src: src}, tr)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// boundedWriter refuses to write more than the archive has yielded so far
// (with room for one read ahead): an archive's files hold their own bytes.
type boundedWriter struct {
	w       io.Writer
	src     *countingReader
	written int64
}

func (b *boundedWriter) Write(p []byte) (int, error) {
	if b.written+int64(len(p)) > b.src.n+1<<20 {
		return 0, errors.New("the archive holds a file larger than its own bytes (a sparse file): not a backup's archive")
	}
	n, err := b.w.Write(p)
	b.written += int64(n)
	return n, err
}
