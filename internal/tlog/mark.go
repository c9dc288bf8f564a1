package tlog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ErrRewound means the database's log does not extend a checkpoint this
// node signed: it was restored from a backup or replaced. Signing on would
// publish a second history beside the first.
var ErrRewound = errors.New("the transparency log was rewound")

// A mark is the newest checkpoint a node signed, kept in its data
// directory, outside the database, so that a database restored from a
// backup (or another database) is told apart from the one the node signed
// for before the node signs anything. The file holds the checkpoint's body
// (origin, size, root), which operators can read; it is not signed.

// ReadMark reads the mark at path; ok is false when there is none yet.
func ReadMark(path string) (c Checkpoint, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Checkpoint{}, false, nil
	}
	if err != nil {
		return Checkpoint{}, false, err
	}
	c, err = ParseCheckpoint(string(b))
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("%s: %w", path, err)
	}
	return c, true, nil
}

// WriteMark replaces the mark at path with c: a new file, synced, renamed
// over the old one, so that a crash leaves one or the other.
func WriteMark(path string, c Checkpoint) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".mark-*")
	if err != nil {
		return err
	}
	_, err = tmp.WriteString(c.Body())
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// CheckMark reports ErrRewound, saying how, unless the log in the database
// extends m: the same origin, a signed checkpoint at least as large, and
// the same root at m's size.
func (l *Log) CheckMark(ctx context.Context, m Checkpoint) error {
	if m.Origin != l.origin {
		return fmt.Errorf("%w: this node signed checkpoints of the log %q, and the database holds the log %q", ErrRewound, m.Origin, l.origin)
	}
	_, latest, err := l.Latest(ctx)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if latest.Size < m.Size {
		return fmt.Errorf("%w: the database's log ends at size %d, and this node signed a checkpoint of size %d", ErrRewound, latest.Size, m.Size)
	}
	root, err := l.TreeHash(ctx, m.Size)
	if err != nil {
		return fmt.Errorf("the log's root at size %d: %w", m.Size, err)
	}
	if root != m.Root {
		return fmt.Errorf("%w: the database's log at size %d has another root than the checkpoint this node signed", ErrRewound, m.Size)
	}
	return nil
}

// DeclareRewind appends to the log the declaration that its history
// replaces the one that had reached old, a checkpoint this node signed
// (RewoundEntry), and returns its index; the next checkpoint covers it.
// Auditors who kept old find, in the new history, that the operator said so.
func (l *Log) DeclareRewind(ctx context.Context, old Checkpoint) (int64, error) {
	b, err := RewoundEntry(l.now(), old).Marshal()
	if err != nil {
		return 0, err
	}
	return l.Append(ctx, b)
}
