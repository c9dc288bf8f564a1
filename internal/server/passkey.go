package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/civstack/civstack/internal/registry"
)

const (
	ceremonyTTL  = 5 * time.Minute
	maxJSONBody  = 64 << 10
	kindRegister = "register"
	kindLogin    = "login"
	kindAdd      = "add-passkey"
)

// ceremony is the server half of a WebAuthn ceremony, kept until it finishes.
type ceremony struct {
	Session webauthn.SessionData `json:"session"`
	// For registration: the person being created (not yet stored).
	PersonID string `json:"person_id,omitempty"`
	Handle   []byte `json:"handle,omitempty"`
	Name     string `json:"name,omitempty"`
	// For adding a passkey: its label.
	Label string `json:"label,omitempty"`
}

type beginResponse struct {
	Ceremony string `json:"ceremony"`
	Options  any    `json:"options"`
}

// decodeJSON reads a small JSON object strictly: unknown fields, trailing data
// and oversize bodies are errors.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	b, err := readJSONText(w, r, maxJSONBody)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return fmt.Errorf("the request body is larger than %d bytes", maxJSONBody)
	case err != nil:
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("the request body is not the JSON expected: %v", err)
	}
	if dec.More() {
		return errors.New("the request body has data after the JSON object")
	}
	return nil
}

func (s *Server) passkeyRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /auth/register/begin", s.limited(s.registerBegin))
	mux.HandleFunc("POST /auth/register/finish", s.registerFinish)
	mux.HandleFunc("POST /auth/login/begin", s.limited(s.loginBegin))
	mux.HandleFunc("POST /auth/login/finish", s.loginFinish)
	mux.HandleFunc("POST /auth/passkeys/begin", s.limited(s.signedIn(s.addPasskeyBegin)))
	mux.HandleFunc("POST /auth/passkeys/finish", s.signedIn(s.addPasskeyFinish))
}

func (s *Server) saveCeremony(w http.ResponseWriter, r *http.Request, kind, personID string, c ceremony, options any) {
	blob, err := json.Marshal(c)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	handle, err := s.reg.SaveCeremony(r.Context(), kind, personID, blob, ceremonyTTL)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, beginResponse{Ceremony: handle, Options: options})
}

// takeCeremony loads and spends the ceremony named in the query string.
func (s *Server) takeCeremony(w http.ResponseWriter, r *http.Request, kind string) (*ceremony, string, bool) {
	personID, blob, err := s.reg.TakeCeremony(r.Context(), r.URL.Query().Get("ceremony"), kind)
	if errors.Is(err, registry.ErrNotFound) || errors.Is(err, registry.ErrExpired) {
		writeProblem(w, http.StatusBadRequest, "This passkey request is unknown or has expired. Start again.")
		return nil, "", false
	}
	if err != nil {
		s.failErr(w, r, err)
		return nil, "", false
	}
	var c ceremony
	if err := json.Unmarshal(blob, &c); err != nil {
		s.failErr(w, r, err)
		return nil, "", false
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxJSONBody)
	return &c, personID, true
}

func (s *Server) registerBegin(w http.ResponseWriter, r *http.Request) {
	var in struct {
		DisplayName string `json:"display_name"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		writeProblem(w, http.StatusBadRequest, sentence(err))
		return
	}
	p, err := s.reg.NewPerson(in.DisplayName)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	opts, sess, err := s.wa.BeginRegistration(p)
	if err != nil {
		s.failErr(w, r, fmt.Errorf("begin registration: %w", err))
		return
	}
	s.saveCeremony(w, r, kindRegister, "", ceremony{Session: *sess, PersonID: p.ID, Handle: p.Handle, Name: p.DisplayName}, opts)
}

func (s *Server) registerFinish(w http.ResponseWriter, r *http.Request) {
	c, _, ok := s.takeCeremony(w, r, kindRegister)
	if !ok {
		return
	}
	p := &registry.Person{ID: c.PersonID, Handle: c.Handle, DisplayName: c.Name, CreatedAt: s.now().UTC()}
	cred, err := s.wa.FinishRegistration(p, c.Session, r)
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "The passkey could not be verified: "+webauthnReason(err))
		return
	}
	if err := s.reg.CreatePerson(r.Context(), p, cred, "First passkey"); err != nil {
		s.failErr(w, r, err)
		return
	}
	if err := s.startSession(w, r, p.ID); err != nil {
		s.failErr(w, r, err)
		return
	}
	s.log.Info("person registered")
	writeJSON(w, http.StatusOK, map[string]string{"redirect": "/"})
}

func (s *Server) loginBegin(w http.ResponseWriter, r *http.Request) {
	opts, sess, err := s.wa.BeginDiscoverableLogin()
	if err != nil {
		s.failErr(w, r, fmt.Errorf("begin login: %w", err))
		return
	}
	s.saveCeremony(w, r, kindLogin, "", ceremony{Session: *sess}, opts)
}

func (s *Server) loginFinish(w http.ResponseWriter, r *http.Request) {
	c, _, ok := s.takeCeremony(w, r, kindLogin)
	if !ok {
		return
	}
	var found *registry.Person
	var lookup error // the store's failure, which is not an unknown passkey
	user, cred, err := s.wa.FinishPasskeyLogin(func(rawID, userHandle []byte) (webauthn.User, error) {
		p, err := s.reg.PersonByHandle(r.Context(), userHandle)
		if err != nil {
			if !errors.Is(err, registry.ErrNotFound) {
				lookup = err
			}
			return nil, err
		}
		found = p
		return p, nil
	}, c.Session, r)
	if lookup != nil {
		s.failErr(w, r, fmt.Errorf("finish login: %w", lookup))
		return
	}
	if err != nil || found == nil || user == nil {
		writeProblem(w, http.StatusUnauthorized, "This passkey is not registered with civstack, or it could not be verified.")
		return
	}
	if found.Demo && !s.cfg.Demo {
		writeProblem(w, http.StatusUnauthorized, "Demo accounts cannot sign in here.")
		return
	}
	if cred.Authenticator.CloneWarning {
		s.log.Warn("passkey signature counter went backwards; possible cloned authenticator")
	}
	if err := s.reg.TouchPasskey(r.Context(), cred); err != nil {
		s.failErr(w, r, err)
		return
	}
	if err := s.startSession(w, r, found.ID); err != nil {
		s.failErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"redirect": safeNext(r.URL.Query().Get("next"))})
}

func (s *Server) addPasskeyBegin(w http.ResponseWriter, r *http.Request, v *viewer) {
	var in struct {
		Label string `json:"label"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		writeProblem(w, http.StatusBadRequest, sentence(err))
		return
	}
	p, err := s.reg.PersonWithCredentials(r.Context(), v.person.ID)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	var exclude []protocol.CredentialDescriptor
	for _, c := range p.Credentials {
		exclude = append(exclude, c.Descriptor())
	}
	opts, sess, err := s.wa.BeginRegistration(p, webauthn.WithExclusions(exclude))
	if err != nil {
		s.failErr(w, r, fmt.Errorf("begin registration: %w", err))
		return
	}
	s.saveCeremony(w, r, kindAdd, p.ID, ceremony{Session: *sess, Label: in.Label}, opts)
}

// takeOwnCeremony finishes a ceremony of kind that the signed-in person
// started, and loads them with their passkeys; false when a problem was
// written.
func (s *Server) takeOwnCeremony(w http.ResponseWriter, r *http.Request, v *viewer, kind string) (*ceremony, *registry.Person, bool) {
	c, personID, ok := s.takeCeremony(w, r, kind)
	if !ok {
		return nil, nil, false
	}
	if personID != v.person.ID {
		writeProblem(w, http.StatusForbidden, "This passkey request belongs to another session.")
		return nil, nil, false
	}
	p, err := s.reg.PersonWithCredentials(r.Context(), v.person.ID)
	if err != nil {
		s.failErr(w, r, err)
		return nil, nil, false
	}
	return c, p, true
}

func (s *Server) addPasskeyFinish(w http.ResponseWriter, r *http.Request, v *viewer) {
	c, p, ok := s.takeOwnCeremony(w, r, v, kindAdd)
	if !ok {
		return
	}
	cred, err := s.wa.FinishRegistration(p, c.Session, r)
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "The passkey could not be verified: "+webauthnReason(err))
		return
	}
	if err := s.reg.AddPasskey(r.Context(), p.ID, cred, c.Label); err != nil {
		s.failErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"redirect": "/account?added=1"})
}

// webauthnReason extracts the library's short reason without internals.
func webauthnReason(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) && pe.Details != "" {
		return pe.Details
	}
	return "the browser's answer did not match the request"
}

// passkeyIDText encodes a credential id for URLs.
func passkeyIDText(id []byte) string { return base64.RawURLEncoding.EncodeToString(id) }

func parsePasskeyID(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	// Only the canonical spelling is accepted (the decoder skips newlines).
	if err != nil || len(b) == 0 || len(b) > 1023 || passkeyIDText(b) != s {
		return nil, errors.New("bad passkey id")
	}
	return b, nil
}
