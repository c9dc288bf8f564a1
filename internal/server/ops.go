package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func (s *Server) opsRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	if !s.cfg.MetricsElsewhere {
		mux.Handle("GET /metrics", s.promMetrics())
	}
}

func (s *Server) promMetrics() http.Handler {
	return promhttp.HandlerFor(s.promReg, promhttp.HandlerOpts{})
}

// MetricsHandler serves /metrics (and /healthz) for a listener of the
// operator's own, such as one reachable from the monitoring network only.
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.promMetrics())
	mux.HandleFunc("GET /healthz", s.healthz)
	return mux
}

// healthz says the process is alive.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "version": s.cfg.Version})
}

// readyz says whether the database answers, so a load balancer can take the
// node out of rotation when it does not.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if err := s.db.Ping(r.Context()); err != nil {
		s.log.Warn("not ready", "err", err)
		writeProblem(w, http.StatusServiceUnavailable, "The database does not answer.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "database": string(s.db.Dialect())})
}
