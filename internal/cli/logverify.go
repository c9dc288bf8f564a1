package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/civstack/civstack/internal/exchange"
	"github.com/civstack/civstack/internal/keyring"
	"github.com/civstack/civstack/internal/store"
	civtlog "github.com/civstack/civstack/internal/tlog"
)

const logSynopsis = `log verify --url URL --key VKEY [--state FILE]
                           [--db URL | --data DIR] [--exchange-secret FILE]

An auditor's check of a civstack transparency log (or any C2SP tlog-tiles log
whose entries are civstack entries). It fetches the checkpoint and checks its
signature against VKEY (the log's verifier key, shown on its /log page), checks
that the log only grew since the checkpoint kept in --state, fetches every
entry bundle and hash tile, recomputes the tree and compares it with the
signed root, and then saves the new checkpoint in --state. With --db or --data
(the node's database) it also checks every data-exchange access record against
its log entry and reports a changed or deleted record, one hidden from its
citizen, one not released under a policy in force (its policy since changed,
deleted, or not in force at the time) and a wrong count on the DPA's page;
with the node's exchange secret (--exchange-secret, or DIR/keys/exchange.secret
with --data) also a record moved to another citizen. It exits 1 and says what
is wrong.

       civstack log reindex [--data DIR | --db URL] [--quiet]

Rebuilds the node's data-exchange access index and the DPA's counts from the
access records kept in the log's rows, after log verify reported a record
hidden from its citizen (its index row missing or changed) or a wrong count.
Stop every node first (it refuses while one runs, and no node starts until
it has finished). Every citizen keeps seeing every record meanwhile. Then run
log verify again.`

// logState is what log verify remembers between runs.
type logState struct {
	Origin     string `json:"origin"`
	Size       int64  `json:"size"`
	Root       string `json:"root"`
	Checkpoint string `json:"checkpoint"`
	CheckedAt  string `json:"checked_at"`
}

func runLog(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 && args[0] == "reindex" {
		return runLogReindex(ctx, e, args[1:])
	}
	if len(args) == 0 || args[0] != "verify" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprintf(e.stdout, "Usage: civstack %s\n", logSynopsis)
			return nil
		}
		return fmt.Errorf("%w: say verify or reindex (see civstack log --help)", errUsage)
	}
	f := newFlags(e, logSynopsis, "")
	base := f.String("url", "", "the log's URL prefix, e.g. https://civstack.example.org/log")
	vkey := f.String("key", "", "the log's verifier key (C2SP vkey)")
	statePath := f.String("state", "", "file that keeps the last verified checkpoint (created if missing)")
	quiet := f.Bool("quiet", false, "no progress lines")
	dbURL := f.DB("also audit the access records in this PostgreSQL database")
	dataDir := f.String("data", "", "also audit the access records in this data directory's SQLite database")
	secretPath := f.String("exchange-secret", "", "the node's exchange secret file (default with --data: DIR/keys/exchange.secret), to check each access record's citizen against its entry's pseudonym")
	if err := f.parse(args[1:], false); err != nil {
		return err
	}
	if *base == "" || *vkey == "" {
		return fmt.Errorf("%w: --url and --key are required", errUsage)
	}
	if err := civtlog.CheckVerifierKey(*vkey); err != nil {
		return fmt.Errorf("%w: --key: %v", errUsage, err)
	}
	if *secretPath != "" && *dbURL == "" && *dataDir == "" {
		return fmt.Errorf("%w: --exchange-secret audits the access records of --db or --data; give one", errUsage)
	}
	secret, err := exchangeSecret(*secretPath, *dataDir) // before the long part
	if err != nil {
		return err
	}
	u, err := url.Parse(*base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: --url %q is not an http(s) URL", errUsage, *base)
	}
	a := &auditor{base: strings.TrimRight(*base, "/"), client: &http.Client{Timeout: 30 * time.Second}, ctx: ctx}
	progress := func(format string, args ...any) {
		if !*quiet {
			fmt.Fprintf(e.stderr, format+"\n", args...)
		}
	}

	signed, err := a.get("checkpoint")
	if err != nil {
		return err
	}
	cp, err := civtlog.OpenCheckpoint(signed, *vkey)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	keyName, keyHash, _ := strings.Cut(*vkey, "+")
	keyHash, _, _ = strings.Cut(keyHash, "+")
	progress("checkpoint: %s, %d entries, its signature verified with the key %s+%s", cp.Origin, cp.Size, keyName, keyHash)

	var old *logState
	if *statePath != "" {
		b, err := os.ReadFile(*statePath)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return fmt.Errorf("state file: %w", err)
		default:
			old = &logState{}
			if err := json.Unmarshal(b, old); err != nil {
				return fmt.Errorf("state file %s is not a civstack log state: %v", *statePath, err)
			}
			// The saved checkpoint must still verify: a state file from another
			// log or key is refused rather than trusted.
			prev, err := civtlog.OpenCheckpoint([]byte(old.Checkpoint), *vkey)
			if err != nil {
				return fmt.Errorf("state file %s: its checkpoint does not verify with this key: %w", *statePath, err)
			}
			if prev.Origin != cp.Origin {
				return fmt.Errorf("state file %s is for the log %q, not %q", *statePath, prev.Origin, cp.Origin)
			}
		}
	}
	// A history that is not the one checked before is reported once the
	// new one is verified, with what the log itself declares about it.
	var broken error
	var prev civtlog.Checkpoint
	if old != nil {
		prev, _ = civtlog.OpenCheckpoint([]byte(old.Checkpoint), *vkey)
		if cp.Size < prev.Size {
			broken = fmt.Errorf("THE LOG SHRANK: it has %d entries now, %d when last checked (%s)", cp.Size, prev.Size, old.CheckedAt)
		}
	}

	tree := tlog.Tree{N: cp.Size, Hash: cp.Root}
	thr := tlog.TileHashReader(tree, a)
	if old != nil && broken == nil {
		if prev.Size == cp.Size && prev.Root != cp.Root {
			broken = fmt.Errorf("THE LOG FORKED: two different roots for %d entries (%s now, %s before)", cp.Size, cp.Root, prev.Root)
		}
		if prev.Size > 0 && prev.Size < cp.Size {
			proof, err := tlog.ProveTree(cp.Size, prev.Size, thr)
			if err != nil {
				return fmt.Errorf("consistency with the checkpoint of %d entries: %w", prev.Size, err)
			}
			if err := tlog.CheckTree(proof, cp.Size, cp.Root, prev.Size, prev.Root); err != nil {
				broken = fmt.Errorf("THE LOG WAS REWRITTEN: the checkpoint of %d entries is not consistent with the one of %d entries seen before: %v", cp.Size, prev.Size, err)
			} else {
				progress("consistent with the %d entries checked on %s", prev.Size, old.CheckedAt)
			}
		}
	}
	var declared []string // the log's own declarations of a rewind from the history checked before

	// With the node's database, its access records are audited range by
	// range as the entries arrive, so that memory does not grow with the log.
	var audit *exchange.Auditor
	if *dbURL != "" || *dataDir != "" {
		db, err := store.Open(ctx, store.Options{URL: *dbURL, DataDir: *dataDir})
		if err != nil {
			return err
		}
		defer db.Close()
		if audit, err = exchange.NewAuditor(ctx, db, cp.Size, secret); err != nil {
			return fmt.Errorf("access records: %w", err)
		}
	}

	// Recompute the whole tree from the entries, and check every level-0
	// tile against the entries' hashes.
	recomputed := &frontier{hashes: map[int64]tlog.Hash{}}
	kinds := map[civtlog.Kind]int64{}
	access := map[int64]*civtlog.Entry{} // the current audit range's
	var accessEntries int64
	last := time.Now()
	for start := int64(0); start < cp.Size; start += 256 {
		w := int(min(256, cp.Size-start))
		bt := civtlog.Tile{Level: civtlog.EntriesLevel, N: start / 256, W: w}
		bundle, err := a.get(bt.Path())
		if err != nil {
			return err
		}
		entries, err := civtlog.SplitBundle(bundle)
		if err != nil {
			return fmt.Errorf("%s: %w", bt.Path(), err)
		}
		if len(entries) != w {
			return fmt.Errorf("%s holds %d entries, want %d", bt.Path(), len(entries), w)
		}
		ht := civtlog.Tile{Level: 0, N: start / 256, W: w}
		tile, err := a.get(ht.Path())
		if err != nil {
			return err
		}
		if len(tile) != 32*w {
			return fmt.Errorf("%s is %d bytes, want %d", ht.Path(), len(tile), 32*w)
		}
		for i, data := range entries {
			idx := start + int64(i)
			entry, err := civtlog.Parse(data)
			if err != nil {
				return fmt.Errorf("entry %d: %w", idx, err)
			}
			kinds[entry.Kind]++
			if size, root, ok := entry.Rewound(); ok && old != nil && size == prev.Size && root == prev.Root {
				declared = append(declared, fmt.Sprintf("entry %d (%s)", idx, entry.Time.Format(time.RFC3339)))
			}
			if entry.Kind == civtlog.KindDataAccess {
				access[idx] = entry
				accessEntries++
			}
			leaf := tlog.RecordHash(data)
			if string(tile[32*i:32*i+32]) != string(leaf[:]) {
				return fmt.Errorf("entry %d does not match its hash in %s: the entry or the tile was altered", idx, ht.Path())
			}
			if err := recomputed.add(leaf); err != nil {
				return err
			}
		}
		recomputed.prune()
		end := start + int64(w)
		if audit != nil && (end%auditRange == 0 || end == cp.Size) {
			if err := audit.Check(ctx, end, access); err != nil {
				return fmt.Errorf("access records: %w", err)
			}
			clear(access)
		}
		if time.Since(last) > time.Second || end == cp.Size {
			progress("verified %d of %d entries", end, cp.Size)
			last = time.Now()
		}
	}
	root := tlog.Hash(civtlog.EmptyRoot)
	if cp.Size > 0 {
		if root, err = tlog.TreeHash(cp.Size, recomputed); err != nil {
			return err
		}
	}
	if root != cp.Root {
		return fmt.Errorf("THE ENTRIES DO NOT MATCH THE SIGNED ROOT: recomputed %s, checkpoint says %s", root, cp.Root)
	}
	// The served upper-level tiles must agree too.
	if cp.Size > 0 {
		if _, err := tlog.TreeHash(cp.Size, thr); err != nil {
			return fmt.Errorf("the hash tiles do not match the signed root: %w", err)
		}
	}

	if audit != nil {
		if cp.Size == 0 {
			if err := audit.Check(ctx, 0, access); err != nil {
				return fmt.Errorf("access records: %w", err)
			}
		}
		checked, problems, err := audit.Finish(ctx)
		if err != nil {
			return fmt.Errorf("access records: %w", err)
		}
		for _, p := range problems {
			e.say("%s", p)
		}
		if len(problems) > 0 {
			return fmt.Errorf("%d problems with the access records (%d checked against %d access entries)", len(problems), checked, accessEntries)
		}
		pseudonyms := "each record's citizen matches its entry's pseudonym"
		if secret == nil {
			pseudonyms = "citizens not checked against pseudonyms: no --exchange-secret"
		}
		progress("access records: %d checked against %d access entries, all match (%s)", checked, accessEntries, pseudonyms)
	}
	if broken != nil {
		// The state file keeps the history checked before: every run reports it.
		if len(declared) > 0 {
			return fmt.Errorf("%v. The log itself declares it: %s says this history replaces the one of %d entries you checked (the operator restored its database from a backup)", broken, strings.Join(declared, ", "), prev.Size)
		}
		return fmt.Errorf("%v. Nothing in the log declares a rewind of the history you checked", broken)
	}
	if *statePath != "" {
		st := logState{Origin: cp.Origin, Size: cp.Size, Root: cp.Root.String(), Checkpoint: string(signed), CheckedAt: time.Now().UTC().Format(time.RFC3339)}
		b, _ := json.MarshalIndent(st, "", "  ")
		tmp := *statePath + ".tmp"
		if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
			return fmt.Errorf("state file: %w", err)
		}
		if err := os.Rename(tmp, *statePath); err != nil {
			return fmt.Errorf("state file: %w", err)
		}
	}
	var parts []string
	for _, k := range civtlog.Kinds {
		if kinds[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", kinds[k], plural(k.String(), kinds[k])))
		}
	}
	if len(parts) == 0 {
		parts = []string{"empty"}
	}
	fmt.Fprintf(e.stdout, "OK: %s has %d entries (%s); root %s\n", cp.Origin, cp.Size, strings.Join(parts, ", "), cp.Root)
	return nil
}

// auditRange is how many log entries the access audit takes at a time (a
// multiple of the 256 of a bundle): its memory is that range's access
// entries and records.
var auditRange int64 = 1 << 16

// frontier recomputes a tree's stored hashes entry by entry, keeping only
// those a later entry or the root can still read: the roots of the
// complete subtrees the tree so far splits into (one per bit of its size),
// so that checking a log of any length takes the same memory. It is the
// HashReader the recomputation reads through; a hash it no longer keeps
// is an error, not a zero.
type frontier struct {
	n      int64 // entries added
	hashes map[int64]tlog.Hash
}

func (f *frontier) ReadHashes(ids []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(ids))
	for i, id := range ids {
		h, ok := f.hashes[id]
		if !ok {
			return nil, fmt.Errorf("hash %d not computed", id)
		}
		out[i] = h
	}
	return out, nil
}

// add appends the entry whose record hash is leaf.
func (f *frontier) add(leaf tlog.Hash) error {
	hs, err := tlog.StoredHashesForRecordHash(f.n, leaf, f)
	if err != nil {
		return err
	}
	base := tlog.StoredHashIndex(0, f.n)
	for k, h := range hs {
		f.hashes[base+int64(k)] = h
	}
	f.n++
	return nil
}

// prune forgets every hash but the roots of the complete subtrees of the
// tree of f.n entries, the only ones an entry added later, or the tree
// hash of this size, reads.
func (f *frontier) prune() {
	keep := map[int64]bool{}
	var covered int64
	for level := 62; level >= 0; level-- {
		if f.n&(1<<level) != 0 {
			keep[tlog.StoredHashIndex(level, covered>>level)] = true
			covered += 1 << level
		}
	}
	for id := range f.hashes {
		if !keep[id] {
			delete(f.hashes, id)
		}
	}
}

// auditor fetches a log's resources over HTTP; it is also the tile reader
// x/mod's TileHashReader checks tiles through.
type auditor struct {
	base   string
	client *http.Client
	ctx    context.Context
}

func (a *auditor) get(path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(a.ctx, http.MethodGet, a.base+"/"+path, nil)
	if err != nil {
		return nil, err
	}
	res, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", path, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch %s: the server answered %s", path, res.Status)
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<24))
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", path, err)
	}
	return b, nil
}

func (a *auditor) Height() int { return civtlog.TileHeight }

func (a *auditor) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		b, err := a.get(civtlog.Tile{Level: t.L, N: t.N, W: t.W}.Path())
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func (a *auditor) SaveTiles([]tlog.Tile, [][]byte) {}

// plural makes an English noun phrase plural when n is not 1.
func plural(s string, n int64) string {
	switch {
	case n == 1:
		return s
	case strings.HasSuffix(s, "ch"), strings.HasSuffix(s, "ss"):
		return s + "es"
	}
	return s + "s"
}

// exchangeSecret reads the node's exchange secret for the audit: from
// path, or else from the data directory's key ring if it has one (nil
// without either). It never creates one.
func exchangeSecret(path, dataDir string) ([]byte, error) {
	if path == "" && dataDir != "" {
		path = filepath.Join(dataDir, "keys", "exchange.secret")
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
	}
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("exchange secret: %w", err)
	}
	if len(b) != keyring.SecretLen {
		return nil, fmt.Errorf("exchange secret %s: %d bytes, want %d", path, len(b), keyring.SecretLen)
	}
	return b, nil
}

// runLogReindex is civstack log reindex (see logSynopsis).
func runLogReindex(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, logSynopsis, "")
	storage := addStorageFlags(f)
	quiet := f.Bool("quiet", false, "no progress lines")
	if err := f.parse(args, false); err != nil {
		return err
	}
	if err := storage.existing(); err != nil {
		return err
	}
	n, err := openNodeAlone(ctx, e, storage, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer n.close()
	records, err := exchange.Reindex(ctx, n.db, func(done, total int64) {
		if !*quiet {
			fmt.Fprintf(e.stderr, "indexed %d of %d log entries\n", done, total)
		}
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "The access index of %s holds %d records again; run civstack log verify to check it.\n", storage.describe(), records)
	return nil
}
