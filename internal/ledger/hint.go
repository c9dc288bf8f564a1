package ledger

import "hash/maphash"

// recentIDs is a Bloom filter over the ids of transfers this engine wrote or
// read recently (two generations of about a million ids each). It is only a
// hint: the engine looks up an id in the database when the filter says it may
// be there (a client retrying a transfer), and otherwise assumes the id is
// new and lets the unique index on ledger_transfers.id prove it. A wrong
// guess costs one rolled-back attempt, never a wrong result (see
// Engine.apply). Not safe for concurrent use: the engine's goroutine owns it.
type recentIDs struct {
	seed  maphash.Seed
	cur   []uint64
	old   []uint64
	count int
}

const (
	recentBits   = 1 << 24 // per generation: 2 MiB
	recentPerGen = 1 << 20 // ids per generation before it rotates
	recentHashes = 4
)

func newRecentIDs() *recentIDs {
	return &recentIDs{seed: maphash.MakeSeed(), cur: make([]uint64, recentBits/64), old: make([]uint64, recentBits/64)}
}

func (f *recentIDs) positions(id ID) (uint64, uint64) {
	h := maphash.Bytes(f.seed, id[:])
	return h, h>>32 | 1
}

func (f *recentIDs) add(id ID) {
	if f.count == recentPerGen {
		f.old, f.cur = f.cur, f.old
		clear(f.cur)
		f.count = 0
	}
	f.count++
	h, step := f.positions(id)
	for i := 0; i < recentHashes; i++ {
		bit := h % recentBits
		f.cur[bit/64] |= 1 << (bit % 64)
		h += step
	}
}

// mayContain reports whether id may have been added (false positives are
// rare; ids older than two generations are forgotten).
func (f *recentIDs) mayContain(id ID) bool {
	h, step := f.positions(id)
	inCur, inOld := true, true
	for i := 0; i < recentHashes; i++ {
		bit := h % recentBits
		word, mask := bit/64, uint64(1)<<(bit%64)
		inCur = inCur && f.cur[word]&mask != 0
		inOld = inOld && f.old[word]&mask != 0
		h += step
	}
	return inCur || inOld
}
