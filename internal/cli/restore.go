package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"filippo.io/age"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/tlog"
)

const restoreHelp = `Puts a backup made by civstack backup back in place of a node's database,
with every node stopped (it refuses while one runs, and no node starts until
it is done). It first checks the backup against its SHA256SUMS and the
database's copy itself, and that the backup's keys are the node's: a key in
DATA/keys that differs from the backup's stops it before anything changes.
Keys and health files the node lacks are copied from the backup; the node's
own are kept.

On SQLite the database it replaces is kept beside it, as
DATA/civstack.db.replaced-TIME. On PostgreSQL the database's public schema
is replaced in one transaction (pg_restore and psql, PostgreSQL's client
programs); the database must be civstack's alone.

--dry-run runs every check and says what a restore would do, changing
nothing: a way to test backups while the nodes serve.

Everything after the backup is lost, the transparency log's entries too:
serve then refuses until started with --accept-log-rewind. Read "Backups
and restoring" in docs/operations.md first.`

func runRestore(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, "restore --from DIR [--data DIR | --db URL]", restoreHelp)
	storage := addStorageFlags(f)
	from := f.String("from", "", "the backup's directory, as civstack backup made it (required)")
	pgRestore := f.String("pg-restore", "pg_restore", "PostgreSQL's pg_restore (with --db)")
	psql := f.String("psql", "psql", "PostgreSQL's psql (with --db)")
	dryRun := f.Bool("dry-run", false, "check the backup (and its keys against the node's) and say what a restore would do, changing nothing: a test of a backup")
	identity := f.String("identity", "", "an encrypted backup's key: a file of age identities (AGE-SECRET-KEY-…), one of whose public keys it was encrypted to")
	if err := f.parse(args, false); err != nil {
		return err
	}
	if *from == "" {
		return fmt.Errorf("%w: give --from DIR, a directory civstack backup made", errUsage)
	}
	shown := *from // an encrypted backup is checked where it was opened
	if _, err := os.Stat(filepath.Join(*from, encryptedName)); err == nil {
		opened, err := openEncrypted(e, *from, *identity, *storage.data)
		if opened != "" {
			defer os.RemoveAll(opened)
		}
		if err != nil {
			return err
		}
		*from = opened
	} else if *identity != "" {
		return fmt.Errorf("%w: %s is not an encrypted backup (no %s): restore it without --identity", errUsage, *from, encryptedName)
	}
	onPG := *storage.db != ""
	copyName := store.SQLiteFile
	if onPG {
		copyName = store.PostgresDump
	}
	copyPath := filepath.Join(*from, copyName)
	if _, err := os.Stat(copyPath); err != nil {
		other := "a SQLite backup (civstack.db): restore it without --db"
		if !onPG {
			other = "a PostgreSQL backup (civstack.pgdump): restore it with --db"
		}
		if _, err := os.Stat(filepath.Join(*from, store.SQLiteFile)); onPG && err == nil {
			return fmt.Errorf("%w: %s is %s", errUsage, *from, other)
		}
		if _, err := os.Stat(filepath.Join(*from, store.PostgresDump)); !onPG && err == nil {
			return fmt.Errorf("%w: %s is %s", errUsage, *from, other)
		}
		return fmt.Errorf("%s holds no %s: give a directory civstack backup made", *from, copyName)
	}

	fmt.Fprintf(e.stdout, "Checking the backup in %s…\n", shown)
	n, err := verifySums(*from)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "  %d files match SHA256SUMS\n", n)
	if m, ok := readManifest(*from); ok {
		e.say("  %s", m)
	}
	var restoredSize int64 // the restored log's newest signed checkpoint
	if onPG {
		tables, err := store.CheckPgDump(ctx, copyPath, *pgRestore)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "  pg_restore reads the dump: %d tables' data\n", tables)
	} else {
		info, err := store.CheckSQLiteCopy(ctx, copyPath)
		if err != nil {
			return err
		}
		if known := store.KnownVersion(store.SQLite); info.Schema > known {
			return fmt.Errorf("the backup's schema is newer than this civstack knows (version %d, this build knows up to %d): restore it with the civstack that made it", info.Schema, known)
		}
		restoredSize = info.Integrated
		fmt.Fprintf(e.stdout, "  the database's copy is whole: schema version %d, %d log entries, signed checkpoint of size %d\n", info.Schema, info.Entries, info.Integrated)
	}
	var missing []string
	for _, dir := range []string{"keys", "health"} {
		m, err := compareTree(filepath.Join(*from, dir), filepath.Join(*storage.data, dir), dir == "keys")
		if err != nil {
			return err
		}
		missing = append(missing, m...)
	}

	if *dryRun {
		fmt.Fprintf(e.stdout, "Dry run: the backup checks. A restore would replace the database (%s)", storage.describe())
		if len(missing) > 0 {
			fmt.Fprintf(e.stdout, " and copy %d %s the node lacks (%s)", len(missing), plural("file", int64(len(missing))), strings.Join(missing, ", "))
		}
		fmt.Fprintln(e.stdout, "; nothing was changed.")
		return nil
	}
	fmt.Fprintf(e.stdout, "Restoring the database (%s)…\n", storage.describe())
	if onPG {
		if restoredSize, err = restorePostgres(ctx, storage, copyPath, store.RestoreOptions{PgRestore: *pgRestore, Psql: *psql}); err != nil {
			return err
		}
	} else {
		replaced, err := restoreSQLite(ctx, storage, copyPath, e.now().UTC().Format("20060102T150405Z"))
		if err != nil {
			return err
		}
		if replaced != "" {
			fmt.Fprintf(e.stdout, "  the database it replaced is kept as %s\n", replaced)
		}
	}
	for _, rel := range missing {
		src, dst := filepath.Join(*from, rel), filepath.Join(*storage.data, rel)
		st, err := os.Stat(src)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return err
		}
		if err := copyFile(src, dst, st.Mode().Perm()); err != nil {
			return fmt.Errorf("the database is restored, but copying %s failed: %w", rel, err)
		}
		fmt.Fprintf(e.stdout, "Copied %s from the backup\n", rel)
	}
	fmt.Fprintln(e.stdout, "Restored.")
	mark, ok, err := tlog.ReadMark(filepath.Join(*storage.data, logMarkFile))
	if err == nil && ok && mark.Size > restoredSize {
		fmt.Fprintf(e.stdout, "This node signed the log up to size %d; the restored log is shorter, so serve refuses it until you start it once\nwith --accept-log-rewind (docs/operations.md, \"What a restore does to the log\").\n", mark.Size)
	}
	return nil
}

// openEncrypted checks an encrypted backup against its SHA256SUMS and opens
// it with the identities in identityFile into a directory of its own in the
// data directory (0700; the caller removes it), whose path it returns.
func openEncrypted(e *env, from, identityFile, data string) (string, error) {
	if identityFile == "" {
		return "", fmt.Errorf("%w: %s is encrypted: give --identity FILE, an age identity of one of its recipients", errUsage, from)
	}
	fmt.Fprintf(e.stdout, "Opening the encrypted backup in %s…\n", from)
	if _, err := verifySums(from); err != nil {
		return "", err
	}
	f, err := os.Open(identityFile)
	if err != nil {
		return "", fmt.Errorf("--identity: %w", err)
	}
	ids, err := age.ParseIdentities(f)
	f.Close()
	if err != nil {
		return "", fmt.Errorf("--identity %s: %v", identityFile, err)
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(data, ".restore-")
	if err != nil {
		return "", err
	}
	if err := decryptTo(filepath.Join(from, encryptedName), dir, ids); err != nil {
		return dir, err
	}
	fmt.Fprintln(e.stdout, "  decrypted")
	return dir, nil
}

// restoreSQLite replaces the node's SQLite database with the copy, holding
// the nodes' lease exclusively (with the database closed) when there is a
// database to replace.
func restoreSQLite(ctx context.Context, storage storageFlags, copyPath, stamp string) (string, error) {
	live := filepath.Join(*storage.data, store.SQLiteFile)
	if _, err := os.Stat(live); errors.Is(err, fs.ErrNotExist) {
		// A data directory without a database: no node runs on it.
		if err := os.MkdirAll(*storage.data, 0o700); err != nil {
			return "", err
		}
		return store.ReplaceSQLite(*storage.data, copyPath, stamp)
	}
	db, err := store.Open(ctx, store.Options{DataDir: *storage.data})
	if err != nil {
		return "", err
	}
	release, err := nodesStopped(ctx, db, storage)
	db.Close() // the leases are locks on files of their own: they stay held
	if err != nil {
		return "", err
	}
	defer release()
	return store.ReplaceSQLite(*storage.data, copyPath, stamp)
}

// restorePostgres restores the dump, holding the nodes' lease exclusively,
// and returns the size of the restored log's newest signed checkpoint.
func restorePostgres(ctx context.Context, storage storageFlags, dump string, o store.RestoreOptions) (int64, error) {
	db, err := store.Open(ctx, store.Options{URL: *storage.db})
	if err != nil {
		return 0, err
	}
	defer db.Close()
	release, err := nodesStopped(ctx, db, storage)
	if err != nil {
		return 0, err
	}
	defer release()
	if err := db.RestorePostgres(ctx, dump, o); err != nil {
		return 0, err
	}
	var size int64
	if err := db.Reader().QueryRowContext(ctx, "SELECT COALESCE(MAX(size), 0) FROM tlog_checkpoints").Scan(&size); err != nil {
		return 0, fmt.Errorf("the restored database's log: %w", err)
	}
	return size, nil
}

// compareTree compares the files under the backup's dir with the node's:
// it returns the paths (relative to the data directory) the node lacks.
// With strict, a file both hold with other contents is an error (a key:
// the backup is another node's, or the key was replaced since); otherwise
// the node's own is kept.
func compareTree(backup, node string, strict bool) ([]string, error) {
	var missing []string
	if _, err := os.Stat(backup); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	part := filepath.Base(backup) // "keys" or "health": what rel is reported under
	err := eachFile(backup, func(p, rel string, _ fs.FileInfo) error {
		rel = filepath.Join(part, rel)
		mine := filepath.Join(filepath.Dir(node), rel)
		theirs, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		have, err := os.ReadFile(mine)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, rel)
		case err != nil:
			return err
		case strict && !bytes.Equal(have, theirs):
			return fmt.Errorf("%s differs from the backup's %s: the backup is of another node, or the file was replaced since; nothing was changed", mine, rel)
		}
		return nil
	})
	return missing, err
}

// verifySums checks every file SHA256SUMS in dir lists, and returns how
// many it checked.
func verifySums(dir string) (int, error) {
	f, err := os.Open(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		return 0, fmt.Errorf("%s has no SHA256SUMS: give a directory civstack backup made", dir)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || len(sum) != 64 || name == "" || strings.Contains(name, "..") || filepath.IsAbs(name) {
			return n, fmt.Errorf("%s: line %d is not a sha256sum line", filepath.Join(dir, "SHA256SUMS"), n+1)
		}
		got, err := fileDigest(filepath.Join(dir, filepath.FromSlash(name)))
		if errors.Is(err, fs.ErrNotExist) {
			return n, fmt.Errorf("the backup lacks %s, which SHA256SUMS lists", name)
		}
		if err != nil {
			return n, err
		}
		if got != sum {
			return n, fmt.Errorf("%s does not match SHA256SUMS: the backup is damaged", filepath.Join(dir, filepath.FromSlash(name)))
		}
		n++
	}
	if err := sc.Err(); err != nil {
		return n, err
	}
	if n == 0 {
		return 0, fmt.Errorf("%s lists no files", filepath.Join(dir, "SHA256SUMS"))
	}
	return n, nil
}
