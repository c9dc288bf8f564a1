package server

// SetExportChunk makes the DPA's CSV exports read n records at a time, so
// that a test's few records span several chunks; the returned func undoes it.
func SetExportChunk(n int) func() {
	old := dpaChunk.Swap(int64(n))
	return func() { dpaChunk.Store(old) }
}
