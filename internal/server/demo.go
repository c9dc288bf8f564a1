package server

import (
	"net/http"

	"github.com/civstack/civstack/internal/demo"
	"github.com/civstack/civstack/internal/web"
)

// demoRoutes exist only when the server runs with --demo.
func (s *Server) demoRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /demo/persona/{id}", s.switchPersona)
}

// switchPersona signs the browser in as a demo persona, without a passkey.
func (s *Server) switchPersona(w http.ResponseWriter, r *http.Request) {
	p, err := s.citizen(r.Context(), r.PathValue("id"))
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	if p == nil || !p.Demo {
		s.fail(w, r, http.StatusNotFound, "There is no such demo persona.")
		return
	}
	if err := s.startSession(w, r, p.ID); err != nil {
		s.failErr(w, r, err)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// personas lists the demo people for the switcher.
func (s *Server) personas(r *http.Request) []web.Persona {
	people, err := s.reg.DemoPeople(r.Context())
	if err != nil {
		s.log.Warn("list personas", "err", err)
		return nil
	}
	demo.Sort(people)
	out := make([]web.Persona, 0, len(people))
	for _, p := range people {
		ms, err := s.reg.Memberships(r.Context(), p.ID)
		if err != nil {
			continue
		}
		out = append(out, web.Persona{ID: p.ID, Name: p.DisplayName, Roles: demo.Roles(ms)})
	}
	return out
}
