package tlog

import (
	"context"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// InclusionProof proves entry index is in the tree of the given size, which
// must not exceed the latest checkpoint's. It returns the entry's leaf hash
// and the RFC 6962 audit path.
func (l *Log) InclusionProof(ctx context.Context, index, size, latest int64) (tlog.Hash, tlog.RecordProof, error) {
	if size <= 0 || size > latest || index < 0 || index >= size {
		return tlog.Hash{}, nil, fmt.Errorf("%w: inclusion of entry %d in a tree of %d entries (the log has %d)", ErrBadRequest, index, size, latest)
	}
	hr := l.readHashes(ctx, &l.upper)
	// Fetch the leaf hash in the same query as the proof's hashes.
	leafID := tlog.StoredHashIndex(0, index)
	var leaf tlog.Hash
	fetched := false
	withLeaf := tlog.HashReaderFunc(func(ids []int64) ([]tlog.Hash, error) {
		hs, err := hr.ReadHashes(append(ids[:len(ids):len(ids)], leafID))
		if err != nil {
			return nil, err
		}
		leaf, fetched = hs[len(hs)-1], true
		return hs[:len(hs)-1], nil
	})
	p, err := tlog.ProveRecord(size, index, withLeaf)
	if err != nil {
		return tlog.Hash{}, nil, fmt.Errorf("inclusion proof: %w", err)
	}
	if !fetched {
		if _, err := withLeaf.ReadHashes(nil); err != nil {
			return tlog.Hash{}, nil, err
		}
	}
	return leaf, p, nil
}

// ConsistencyProof proves the tree of size old is a prefix of the tree of
// size new (new no larger than latest).
func (l *Log) ConsistencyProof(ctx context.Context, old, new, latest int64) (tlog.TreeProof, error) {
	if old < 0 || new > latest || old > new {
		return nil, fmt.Errorf("%w: consistency from %d to %d entries (the log has %d)", ErrBadRequest, old, new, latest)
	}
	if old == 0 || old == new {
		return tlog.TreeProof{}, nil
	}
	p, err := tlog.ProveTree(new, old, l.readHashes(ctx, &l.upper))
	if err != nil {
		return nil, fmt.Errorf("consistency proof: %w", err)
	}
	return p, nil
}

// TreeHash computes the root of the first size entries from stored hashes.
func (l *Log) TreeHash(ctx context.Context, size int64) (tlog.Hash, error) {
	if size == 0 {
		return EmptyRoot, nil
	}
	return tlog.TreeHash(size, l.readHashes(ctx, nil))
}
