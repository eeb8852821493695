package main

import (
	"crypto/tls"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certReloader serves the key pair from --tls-cert/--tls-key and picks up
// a renewed one (certbot, cert-manager and the like replace the files)
// without a restart: at most every checkEvery, a handshake looks at the
// files' modification times and reloads them if they changed. A pair that
// fails to load keeps the previous one in service.
type certReloader struct {
	certFile, keyFile string
	checkEvery        time.Duration
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	modTime time.Time // newer of the two files' when cert was loaded
	checked time.Time
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	c := &certReloader{certFile: certFile, keyFile: keyFile, checkEvery: 10 * time.Second, log: log}
	mod := c.filesModTime()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	c.cert, c.modTime, c.checked = &cert, mod, time.Now()
	return c, nil
}

func (c *certReloader) filesModTime() time.Time {
	var newest time.Time
	for _, f := range []string{c.certFile, c.keyFile} {
		if fi, err := os.Stat(f); err == nil && fi.ModTime().After(newest) {
			newest = fi.ModTime()
		}
	}
	return newest
}

// GetCertificate is the tls.Config hook.
func (c *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.checked) >= c.checkEvery {
		c.checked = now
		if mod := c.filesModTime(); !mod.Equal(c.modTime) {
			c.modTime = mod // do not retry a bad pair on every handshake
			if cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile); err != nil {
				c.log.Warn("TLS certificate changed but does not load; keeping the previous one", "err", err)
			} else {
				c.cert = &cert
				c.log.Info("TLS certificate reloaded", "cert", c.certFile)
			}
		}
	}
	return c.cert, nil
}
