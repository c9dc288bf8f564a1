package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/civstack/civstack/internal/store"
)

const backupHelp = `Copies a node's database, keys and health files into DIR (new or empty)
while the nodes go on serving: on SQLite the database file itself (DIR is
then a data directory too), on PostgreSQL a pg_dump archive. DIR/SHA256SUMS
lists every file (check a copy with: cd DIR && sha256sum -c SHA256SUMS).
civstack restore --from DIR puts it back. With --recipient (age public
keys), DIR holds instead one file encrypted to them, and the copy in clear
is removed; restore opens it with --identity.

Restoring rewinds the transparency log to the backup's size: read "Backups
and restoring" in docs/operations.md before you restore.`

// backedUpDirs are the data directory's parts a backup copies besides the
// database: the keys (without them the copy's sealed secrets and log are
// useless) and the health authority's files.
var backedUpDirs = []string{"keys", "health"}

func runBackup(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, "backup --out DIR [--data DIR | --db URL]", backupHelp)
	storage := addStorageFlags(f)
	out := f.String("out", "", "the backup's directory: a new or empty one (required)")
	pgDump := f.String("pg-dump", "pg_dump", "PostgreSQL's dump program (with --db); its major version must be at least the server's")
	recipient := f.String("recipient", "", "encrypt the backup to these age public keys (age1…, comma-separated): DIR then holds one encrypted file")
	recipientsFile := f.String("recipients-file", "", "encrypt the backup to the age public keys in this file, one a line")
	if err := f.parse(args, false); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("%w: give --out DIR, a new or empty directory for the backup", errUsage)
	}
	recipients, err := parseRecipients(*recipient, *recipientsFile)
	if err != nil {
		return err
	}
	if entries, err := os.ReadDir(*out); err == nil && len(entries) > 0 {
		return fmt.Errorf("%w: %s is not empty: give a new or empty directory", errUsage, *out)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("--out %s: %w", *out, err)
	}
	if err := storage.existing(); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(*storage.data, "keys")); err != nil {
		return fmt.Errorf("no keys in %s: give the node's --data directory (its keys are part of every backup)", filepath.Join(*storage.data, "keys"))
	}
	_, statErr := os.Stat(*out)
	existed := statErr == nil
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if err := backupTo(ctx, e, storage, *out, *pgDump, recipients); err != nil {
		// Nothing half-written: the directory was empty or new.
		if !existed {
			os.RemoveAll(*out)
		} else if entries, _ := os.ReadDir(*out); entries != nil {
			for _, en := range entries {
				os.RemoveAll(filepath.Join(*out, en.Name()))
			}
		}
		return err
	}
	return nil
}

// backup writes a plain backup into out and returns how many files
// SHA256SUMS lists.
func backup(ctx context.Context, e *env, storage storageFlags, out, pgDump string) (int, error) {
	db, err := store.Open(ctx, store.Options{URL: *storage.db, DataDir: *storage.data})
	if err != nil {
		return 0, err
	}
	defer db.Close()
	schema, err := db.SchemaVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("%s does not look like a civstack database: %w", storage.describe(), err)
	}
	m := &manifest{Civstack: Version, Taken: e.now().UTC().Format(time.RFC3339), Engine: string(db.Dialect()), Schema: schema}
	fmt.Fprintf(e.stdout, "Copying the database (%s, schema version %d)…\n", storage.describe(), schema)
	path, err := db.Backup(ctx, out, store.BackupOptions{PgDump: pgDump})
	if err != nil {
		return 0, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	fmt.Fprintf(e.stdout, "  %s, %s\n", filepath.Base(path), byteSize(st.Size()))
	for _, dir := range backedUpDirs {
		src := filepath.Join(*storage.data, dir)
		if _, err := os.Stat(src); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		n, err := copyTree(src, filepath.Join(out, dir))
		if err != nil {
			return 0, fmt.Errorf("copy %s: %w", src, err)
		}
		fmt.Fprintf(e.stdout, "Copied %s/ (%d files)\n", dir, n)
	}
	if db.Dialect() == store.SQLite {
		fmt.Fprintln(e.stdout, "Checking the copy…")
		info, err := store.CheckSQLiteCopy(ctx, path)
		if err != nil {
			return 0, fmt.Errorf("the copy does not check: %w", err)
		}
		fmt.Fprintf(e.stdout, "  whole (SQLite's integrity check), schema version %d, %d log entries, signed checkpoint of size %d\n",
			info.Schema, info.Entries, info.Integrated)
		m.Schema, m.LogEntries, m.LogCheckpoint = info.Schema, &info.Entries, &info.Integrated
	}
	if db.Dialect() == store.Postgres {
		fmt.Fprintln(e.stdout, "Checking the dump…")
		// pg_restore beside the pg_dump given, else on PATH.
		restore := "pg_restore"
		if strings.ContainsRune(pgDump, filepath.Separator) {
			restore = filepath.Join(filepath.Dir(pgDump), "pg_restore")
		}
		tables, err := store.CheckPgDump(ctx, path, restore)
		if err != nil {
			return 0, fmt.Errorf("the dump does not check: %w", err)
		}
		fmt.Fprintf(e.stdout, "  pg_restore reads it: %d tables' data\n", tables)
	}
	if err := m.write(out); err != nil {
		return 0, err
	}
	files, err := writeSums(out)
	if err != nil {
		return 0, fmt.Errorf("SHA256SUMS: %w", err)
	}
	return files, nil
}

// manifestName is a backup's description: what took it, when, of what. It
// holds no personal data, so an encrypted backup keeps a copy in clear.
const manifestName = "backup.json"

type manifest struct {
	Civstack      string `json:"civstack"`                 // the release that took it
	Taken         string `json:"taken"`                    // when it began, RFC 3339 UTC
	Engine        string `json:"engine"`                   // "sqlite" or "postgres"
	Schema        int64  `json:"schema"`                   // the newest migration the database had
	LogEntries    *int64 `json:"log_entries,omitempty"`    // SQLite: the log's entries in the copy
	LogCheckpoint *int64 `json:"log_checkpoint,omitempty"` // SQLite: the size of the copy's newest signed checkpoint
}

func (m *manifest) write(dir string) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, manifestName), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("%s: %w", manifestName, err)
	}
	return nil
}

// readManifest reads a backup's description; ok is false when it has none
// (or one that does not parse: the sums and the checks still stand).
func readManifest(dir string) (m manifest, ok bool) {
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	return m, err == nil && json.Unmarshal(b, &m) == nil && m.Taken != ""
}

func (m manifest) String() string {
	s := fmt.Sprintf("taken %s by civstack %s (%s, schema version %d", m.Taken, m.Civstack, m.Engine, m.Schema)
	if m.LogCheckpoint != nil {
		s += fmt.Sprintf(", the log signed to size %d", *m.LogCheckpoint)
	}
	return s + ")"
}

// backupTo makes the backup in out, or, with recipients, makes it in a
// directory of its own inside out (removed after) and encrypts that into
// out's one file.
func backupTo(ctx context.Context, e *env, storage storageFlags, out, pgDump string, recipients []age.Recipient) error {
	restoreHint := "To restore it, with every node stopped: civstack restore --from " + out
	if len(recipients) == 0 {
		files, err := backup(ctx, e, storage, out, pgDump)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "Backup complete in %s: %d files listed in SHA256SUMS.\n%s (docs/operations.md, \"Backups and restoring\")\n", out, files, restoreHint)
		return nil
	}
	plain, err := os.MkdirTemp(out, ".plain-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(plain)
	if _, err := backup(ctx, e, storage, plain, pgDump); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Encrypting it to %d %s…\n", len(recipients), plural("recipient", int64(len(recipients))))
	sealed := filepath.Join(out, encryptedName)
	if err := encryptDir(plain, sealed, recipients); err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	// The description stays readable outside the encrypted file.
	if err := copyFile(filepath.Join(plain, manifestName), filepath.Join(out, manifestName), 0o600); err != nil {
		return err
	}
	if err := os.RemoveAll(plain); err != nil {
		return err
	}
	if _, err := writeSums(out); err != nil {
		return fmt.Errorf("SHA256SUMS: %w", err)
	}
	st, err := os.Stat(sealed)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Backup complete in %s: %s (%s), encrypted; the copy in clear is removed.\n", out, encryptedName, byteSize(st.Size()))
	fmt.Fprintf(e.stdout, "%s --identity KEYFILE; or open it with: age -d -i KEYFILE %s | tar -x\n", restoreHint, encryptedName)
	return nil
}

// eachFile calls fn for every regular file under dir, in lexical order,
// with its path relative to dir and its information.
func eachFile(dir string, fn func(path, rel string, info fs.FileInfo) error) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return fn(p, rel, info)
	})
}

// copyTree copies the regular files under src into dst, keeping each
// file's permission bits (keys stay 0600) and making directories 0700. It
// returns how many files it copied.
func copyTree(src, dst string) (int, error) {
	n := 0
	err := eachFile(src, func(p, rel string, info fs.FileInfo) error {
		to := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
			return err
		}
		if err := copyFile(p, to, info.Mode().Perm()); err != nil {
			return err
		}
		n++
		return nil
	})
	return n, err
}

func copyFile(from, to string, perm fs.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// writeSums writes dir/SHA256SUMS in sha256sum's format (the hash, two
// spaces, the path with forward slashes) for every file under dir, in order.
func writeSums(dir string) (int, error) {
	var lines []string
	err := eachFile(dir, func(p, rel string, _ fs.FileInfo) error {
		sum, err := fileDigest(p)
		if err != nil {
			return err
		}
		lines = append(lines, sum+"  "+filepath.ToSlash(rel)+"\n")
		return nil
	})
	if err != nil {
		return 0, err
	}
	slices.SortFunc(lines, func(a, b string) int { return strings.Compare(a[66:], b[66:]) })
	return len(lines), os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(strings.Join(lines, "")), 0o600)
}

// fileDigest is the SHA-256 of the file at path, in hex.
func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// byteSize is n bytes for people: "3.2 MB".
func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f kB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
