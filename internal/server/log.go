package server

import (
	"compress/gzip"
	"encoding/base64"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	xtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/civstack/civstack/internal/tlog"
	"github.com/civstack/civstack/internal/web"
)

// The transparency log surface: C2SP tlog-tiles under /log/, proofs as JSON,
// and a page for people at /log.
func (s *Server) logRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /log/checkpoint", public(s.logCheckpoint))
	mux.HandleFunc("GET /log/tile/", public(s.logTile))
	mux.HandleFunc("GET /log/proof/inclusion", public(s.logInclusion))
	mux.HandleFunc("GET /log/proof/consistency", public(s.logConsistency))
	mux.HandleFunc("GET /log", s.logPage)
}

// public lets auditors' web pages on other sites read the log: it is public
// data, read without credentials.
func public(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		h(w, r)
	}
}

func (s *Server) logFail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, tlog.ErrNotFound):
		writeProblem(w, http.StatusNotFound, sentence(err))
	case errors.Is(err, tlog.ErrBadRequest):
		writeProblem(w, http.StatusBadRequest, sentence(err))
	default:
		s.failErr(w, r, err)
	}
}

func (s *Server) logCheckpoint(w http.ResponseWriter, r *http.Request) {
	signed, _, err := s.tlog.Latest(r.Context())
	if err != nil {
		s.logFail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(signed)
}

func (s *Server) logTile(w http.ResponseWriter, r *http.Request) {
	t, err := tlog.ParseTilePath(r.URL.Path[len("/log/"):])
	if err != nil {
		s.logFail(w, r, err)
		return
	}
	_, cp, err := s.tlog.Latest(r.Context())
	if err != nil {
		s.logFail(w, r, err)
		return
	}
	data, err := s.tlog.ReadTile(r.Context(), t, cp.Size)
	if err != nil {
		s.logFail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	// A tile's bytes never change: full and partial alike.
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	w.Header().Add("Vary", "Accept-Encoding")
	// Entry bundles compress well; C2SP clients send Accept-Encoding: gzip.
	if t.Level == tlog.EntriesLevel && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		zw.Write(data)
		zw.Close()
		return
	}
	w.Write(data)
}

// queryInt reads a non-negative integer query parameter, or def if absent.
func queryInt(r *http.Request, name string, def int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		if def < 0 {
			return 0, errors.New("the " + name + " parameter is required")
		}
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("the " + name + " parameter must be a non-negative integer")
	}
	return n, nil
}

func b64s(hs []xtlog.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = base64.StdEncoding.EncodeToString(h[:])
	}
	return out
}

// proofArgs reads the latest checkpoint's size and two size parameters of a
// proof request; it answers the request itself on error.
func (s *Server) proofArgs(w http.ResponseWriter, r *http.Request, first, second string) (a, b, latest int64, ok bool) {
	_, cp, err := s.tlog.Latest(r.Context())
	if err != nil {
		s.logFail(w, r, err)
		return 0, 0, 0, false
	}
	if a, err = queryInt(r, first, -1); err == nil {
		b, err = queryInt(r, second, cp.Size)
	}
	if err != nil {
		writeProblem(w, http.StatusBadRequest, sentence(err))
		return 0, 0, 0, false
	}
	return a, b, cp.Size, true
}

func (s *Server) logInclusion(w http.ResponseWriter, r *http.Request) {
	index, size, latest, ok := s.proofArgs(w, r, "index", "size")
	if !ok {
		return
	}
	leaf, proof, err := s.tlog.InclusionProof(r.Context(), index, size, latest)
	if err != nil {
		s.logFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"index": index, "size": size,
		"leaf_hash": base64.StdEncoding.EncodeToString(leaf[:]), "proof": b64s(proof)})
}

func (s *Server) logConsistency(w http.ResponseWriter, r *http.Request) {
	old, size, latest, ok := s.proofArgs(w, r, "old", "new")
	if !ok {
		return
	}
	proof, err := s.tlog.ConsistencyProof(r.Context(), old, size, latest)
	if err != nil {
		s.logFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"old": old, "new": size, "proof": b64s(proof)})
}

type kindCount struct {
	Kind     string
	Number   int
	Count    int64
	Selected bool
}

func (s *Server) logPage(w http.ResponseWriter, r *http.Request) {
	signed, cp, err := s.tlog.Latest(r.Context())
	if errors.Is(err, tlog.ErrNotFound) {
		s.render(w, r, nil, http.StatusOK, "log", web.Page{Title: "Transparency log", Data: map[string]any{
			"Empty": true, "Key": s.cfg.LogKey, "URL": s.cfg.PublicURL.String() + "/log"}})
		return
	}
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	counts, err := s.tlog.Counts(r.Context(), cp.Size)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	var only tlog.Kind
	if v := r.URL.Query().Get("kind"); v != "" {
		n, err := strconv.ParseUint(v, 10, 8) // a byte: 258 is not type 2
		if err != nil || !slices.Contains(tlog.Kinds, tlog.Kind(n)) {
			s.fail(w, r, http.StatusBadRequest, "There is no entry type "+strconv.Quote(v)+".")
			return
		}
		only = tlog.Kind(n)
	}
	var kinds []kindCount
	for _, k := range tlog.Kinds {
		kinds = append(kinds, kindCount{k.String(), int(k), counts[k], k == only})
	}
	recent, err := s.tlog.Recent(r.Context(), cp.Size, 20, only)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	s.render(w, r, nil, http.StatusOK, "log", web.Page{Title: "Transparency log", Data: map[string]any{
		"Checkpoint": string(signed), "Size": cp.Size, "Root": cp.Root.String(), "Origin": s.tlog.Origin(),
		"Key": s.cfg.LogKey, "Kinds": kinds, "Recent": recent, "Only": only.String(), "Filtered": only != 0, "URL": s.cfg.PublicURL.String() + "/log",
	}})
}
