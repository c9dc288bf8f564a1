package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/civstack/civstack/internal/identity"
	"github.com/civstack/civstack/internal/issuance"
)

// The identity wallet's protocol endpoints, for any wallet or verifier,
// not only this node's: OpenID4VCI issuer and authorization server
// metadata, SD-JWT VC issuer metadata, the token, nonce and credential
// endpoints, each issuer's Token Status List, and OpenID4VP signed
// request objects and direct_post responses. Errors are OAuth-style JSON
// ({"error", "error_description"}) as those specifications require.

func (s *Server) oid4vcRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /.well-known/openid-credential-issuer/issuers/{slug}", s.issuerEndpoint(s.vciMetadata))
	mux.HandleFunc("GET /.well-known/oauth-authorization-server/issuers/{slug}", s.issuerEndpoint(s.asMetadata))
	mux.HandleFunc("GET /.well-known/jwt-vc-issuer/issuers/{slug}", s.issuerEndpoint(s.jwtVCMetadata))
	mux.HandleFunc("POST /issuers/{slug}/token", s.issuerEndpoint(s.vciToken))
	mux.HandleFunc("POST /issuers/{slug}/nonce", s.protocolLimited(s.issuerEndpoint(s.vciNonce)))
	mux.HandleFunc("POST /issuers/{slug}/credential", s.issuerEndpoint(s.vciCredential))
	mux.HandleFunc("GET /issuers/{slug}/status", s.issuerEndpoint(s.statusList))
	mux.HandleFunc("GET /verifiers/{slug}/requests/{id}", s.verifierEndpoint(s.vpRequestObject))
	mux.HandleFunc("POST /verifiers/{slug}/response", s.verifierEndpoint(s.vpResponse))
}

// oauthError writes an OAuth/OpenID error response.
func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func (s *Server) issuerEndpoint(h func(http.ResponseWriter, *http.Request, *identity.Issuer)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		iss, err := s.id.IssuerBySlug(r.Context(), r.PathValue("slug"))
		if errors.Is(err, identity.ErrNotFound) {
			oauthError(w, http.StatusNotFound, "not_found", "There is no such credential issuer on this node.")
			return
		}
		if err != nil {
			s.log.Error("issuer lookup", "err", err)
			oauthError(w, http.StatusInternalServerError, "server_error", "Something went wrong on our side.")
			return
		}
		h(w, r, iss)
	}
}

func (s *Server) verifierEndpoint(h func(http.ResponseWriter, *http.Request, *identity.Verifier)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := s.id.VerifierBySlug(r.Context(), r.PathValue("slug"))
		if errors.Is(err, identity.ErrNotFound) {
			oauthError(w, http.StatusNotFound, "not_found", "There is no such verifier on this node.")
			return
		}
		if err != nil {
			s.log.Error("verifier lookup", "err", err)
			oauthError(w, http.StatusInternalServerError, "server_error", "Something went wrong on our side.")
			return
		}
		h(w, r, v)
	}
}

func (s *Server) vciMetadata(w http.ResponseWriter, r *http.Request, iss *identity.Issuer) {
	writeJSON(w, http.StatusOK, s.id.Metadata(iss))
}

func (s *Server) asMetadata(w http.ResponseWriter, r *http.Request, iss *identity.Issuer) {
	writeJSON(w, http.StatusOK, s.id.AuthorizationServerMetadata(iss))
}

func (s *Server) jwtVCMetadata(w http.ResponseWriter, r *http.Request, iss *identity.Issuer) {
	m, err := s.id.JWTVCIssuerMetadata(r.Context(), iss)
	if err != nil {
		s.protocolFailure(w, "issuer metadata", err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) protocolFailure(w http.ResponseWriter, what string, err error) {
	s.log.Error(what, "err", err)
	oauthError(w, http.StatusInternalServerError, "server_error", "Something went wrong on our side.")
}

// describe is an error's text without its code prefix.
func describe(err error, code error) string {
	return sentence(errors.New(strings.TrimPrefix(err.Error(), code.Error()+": ")))
}

func (s *Server) vciToken(w http.ResponseWriter, r *http.Request, iss *identity.Issuer) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "The body is not a form.")
		return
	}
	if !valuesText(r.PostForm) {
		oauthError(w, http.StatusBadRequest, "invalid_request", notText)
		return
	}
	if gt := r.PostFormValue("grant_type"); gt != issuance.PreAuthorizedGrant {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "Only the pre-authorized code grant is supported.")
		return
	}
	tok, err := s.id.Token(r.Context(), iss, r.PostFormValue("pre-authorized_code"), r.PostFormValue("tx_code"))
	switch {
	case errors.Is(err, issuance.ErrInvalidRequest):
		oauthError(w, http.StatusBadRequest, "invalid_request", describe(err, issuance.ErrInvalidRequest))
	case errors.Is(err, identity.ErrInvalidGrant):
		oauthError(w, http.StatusBadRequest, "invalid_grant", describe(err, identity.ErrInvalidGrant))
	case err != nil:
		s.protocolFailure(w, "token", err)
	default:
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": int(identity.TokenLifetime.Seconds())})
	}
}

func (s *Server) vciNonce(w http.ResponseWriter, r *http.Request, iss *identity.Issuer) {
	n, err := s.id.Nonce(r.Context())
	if err != nil {
		s.protocolFailure(w, "nonce", err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]string{"c_nonce": n})
}

func (s *Server) vciCredential(w http.ResponseWriter, r *http.Request, iss *identity.Issuer) {
	auth := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || tok == "" {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		oauthError(w, http.StatusUnauthorized, "invalid_token", "Send the access token from the token endpoint as a Bearer token.")
		return
	}
	var req identity.CredentialRequest
	body, err := readJSONText(w, r, 256<<10)
	bad := "The body is not a credential request in JSON."
	if errors.Is(err, errNotText) {
		bad = notText
	}
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	var creds []string
	if err != nil {
		// Only a caller with a token learns what is wrong with its body.
		if err = s.id.CheckToken(r.Context(), iss, tok); err == nil {
			oauthError(w, http.StatusBadRequest, "invalid_credential_request", bad)
			return
		}
	} else {
		creds, err = s.id.Issue(r.Context(), iss, tok, req)
	}
	for _, c := range []struct {
		err    error
		status int
	}{{identity.ErrToken, http.StatusUnauthorized}, {identity.ErrCredentialRequest, 400}, {identity.ErrUnknownConfig, 400},
		{issuance.ErrInvalidProof, 400}, {issuance.ErrInvalidNonce, 400}} {
		if errors.Is(err, c.err) {
			if c.status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			}
			oauthError(w, c.status, c.err.Error(), describe(err, c.err))
			return
		}
	}
	if err != nil {
		s.protocolFailure(w, "credential", err)
		return
	}
	out := make([]map[string]string, len(creds))
	for i, c := range creds {
		out[i] = map[string]string{"credential": c}
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{"credentials": out})
}

func (s *Server) statusList(w http.ResponseWriter, r *http.Request, iss *identity.Issuer) {
	tok, err := s.id.StatusList(r.Context(), iss)
	if err != nil {
		s.protocolFailure(w, "status list", err)
		return
	}
	w.Header().Set("Content-Type", "application/statuslist+jwt")
	w.Header().Set("Cache-Control", "max-age=60")
	_, _ = w.Write([]byte(tok))
}

func (s *Server) vpRequestObject(w http.ResponseWriter, r *http.Request, v *identity.Verifier) {
	jwt, err := s.id.RequestObject(r.Context(), v, r.PathValue("id"))
	switch {
	case errors.Is(err, identity.ErrNotFound):
		oauthError(w, http.StatusNotFound, "invalid_request_uri", "There is no such request.")
	case errors.Is(err, identity.ErrAnswered), errors.Is(err, identity.ErrExpired):
		oauthError(w, http.StatusGone, "invalid_request_uri", sentence(err))
	case err != nil:
		s.protocolFailure(w, "request object", err)
	default:
		w.Header().Set("Content-Type", "application/oauth-authz-req+jwt")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte(jwt))
	}
}

func (s *Server) vpResponse(w http.ResponseWriter, r *http.Request, v *identity.Verifier) {
	r.Body = http.MaxBytesReader(w, r.Body, 256<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "The body is not a form.")
		return
	}
	if !valuesText(r.PostForm) {
		oauthError(w, http.StatusBadRequest, "invalid_request", notText)
		return
	}
	_, err := s.id.Respond(r.Context(), v, r.PostFormValue("state"), r.PostFormValue("vp_token"), r.PostFormValue("error"))
	var rej *identity.Rejection
	switch {
	case errors.Is(err, identity.ErrNotFound):
		oauthError(w, http.StatusBadRequest, "invalid_request", "There is no such request (state).")
	case errors.Is(err, identity.ErrAnswered), errors.Is(err, identity.ErrExpired):
		oauthError(w, http.StatusBadRequest, "invalid_request", sentence(err))
	case errors.Is(err, identity.ErrCannotCheck):
		s.log.Warn("presentation not checked", "err", err)
		w.Header().Set("Retry-After", "30")
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable",
			"The presentation cannot be checked right now: the issuer's key or status list cannot be read. Nothing was recorded; answer again shortly.")
	case errors.As(err, &rej):
		oauthError(w, http.StatusBadRequest, "invalid_request", rej.Reason)
	case err != nil:
		s.protocolFailure(w, "response", err)
	default:
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, map[string]any{})
	}
}
