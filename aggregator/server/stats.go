package server

import "net/http"

func (s *Server) statsRoutes(mux *http.ServeMux, auth func(string, http.HandlerFunc)) {}
