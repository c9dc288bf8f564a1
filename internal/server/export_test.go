package server

// SetExportChunk makes the DPA's CSV exports read n records at a time, so
// that a test's few records span several chunks; the returned func undoes it.
func SetExportChunk(n int) func() {
	old := dpaChunk.Swap(int64(n))
	return func() { dpaChunk.Store(old) }
}

// SetListSizes makes the wallet list wallet payments at a time and the
// point of sale pos of the day's; the returned func undoes it.
func SetListSizes(wallet, pos int) func() {
	oldW, oldP := shownWallet.Swap(int64(wallet)), shownPOS.Swap(int64(pos))
	return func() { shownWallet.Store(oldW); shownPOS.Store(oldP) }
}
