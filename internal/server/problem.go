package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/web"
)

// problem is an RFC 9457 problem details object.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

func wantsJSON(r *http.Request) bool {
	p := r.URL.Path
	return strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/auth/") || strings.HasPrefix(p, "/log/") ||
		strings.Contains(r.Header.Get("Accept"), "application/json") ||
		strings.Contains(r.Header.Get("Content-Type"), "application/json")
}

// fail answers with a readable error: problem details for machines, a page
// for people. detail must never contain personal data.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, detail string) {
	if wantsJSON(r) {
		writeProblem(w, status, detail)
		return
	}
	s.render(w, r, nil, status, "error", web.Page{Title: http.StatusText(status), Error: detail})
}

func writeProblem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// failErr maps a domain error to a status and a message safe to show.
func (s *Server) failErr(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := classify(err)
	if status >= 500 {
		s.log.Error("request failed", "route", r.Pattern, "err", err)
	}
	s.fail(w, r, status, msg)
}

// failWith shows a domain error, mapped by status, on the page page
// renders; an error that is the server's fault gets the error page and is
// logged.
func (s *Server) failWith(w http.ResponseWriter, r *http.Request, err error, status func(error) (int, string), page func(status int, msg string)) {
	code, msg := status(err)
	if code >= 500 {
		s.log.Error("request failed", "route", r.Pattern, "err", err)
		s.fail(w, r, code, msg)
		return
	}
	page(code, msg)
}

func classify(err error) (int, string) {
	if status, msg, ok := sentinelStatus(err, []sentinel{{registry.ErrInvalid, http.StatusBadRequest}}); ok {
		return status, msg
	}
	switch {
	case errors.Is(err, registry.ErrRoleNotOffered):
		if _, role, ok := strings.Cut(err.Error(), registry.ErrRoleNotOffered.Error()+": "); ok {
			return http.StatusBadRequest, "The organisation does not have the " + role + " role."
		}
		return http.StatusBadRequest, sentence(err)
	case errors.Is(err, registry.ErrLastPasskey):
		return http.StatusConflict, "You cannot remove your last passkey: add another one first."
	case errors.Is(err, registry.ErrLastOperator):
		return http.StatusConflict, "This is the last operator: grant the operator role to another person first."
	case errors.Is(err, store.ErrConflict):
		return http.StatusConflict, "That name is already taken."
	case errors.Is(err, registry.ErrNotFound):
		// The registry says what it did not find ("token: not found").
		if what, ok := strings.CutSuffix(err.Error(), ": "+registry.ErrNotFound.Error()); ok && !strings.Contains(what, ": ") {
			return http.StatusNotFound, "There is no such " + what + "."
		}
		return http.StatusNotFound, sentence(err)
	case errors.Is(err, registry.ErrBadToken):
		return http.StatusUnauthorized, "That code or token is unknown, spent or revoked."
	case errors.Is(err, registry.ErrExpired):
		return http.StatusGone, "That link or code has expired."
	case store.IsUnavailable(err):
		return http.StatusServiceUnavailable, "The database cannot be reached right now. Try again shortly."
	}
	return http.StatusInternalServerError, "Something went wrong on our side."
}

// sentence turns a wrapped error into a capitalised sentence. The word
// "invalid" that the domains' sentinel errors lead with is for code that
// tells errors apart, not for people: it is left out.
func sentence(err error) string {
	m := strings.TrimPrefix(err.Error(), "invalid: ")
	if m == "" {
		return m
	}
	return strings.ToUpper(m[:1]) + m[1:] + "."
}
