// Package webtest writes what a test needs to run a daemon behind TLS and
// basic authentication: a throwaway certificate authority, a server
// certificate it signed for 127.0.0.1 and localhost, and a web
// configuration file (exporter-toolkit format) that uses them. Like
// internal/stack it does not import testing.
package webtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Files are the paths of what Write wrote, and the pool to trust.
type Files struct {
	CACert     string // PEM, the authority
	Cert       string // PEM, the server's certificate, signed by the authority
	Key        string // PEM, the server's private key (mode 0600)
	ConfigFile string // the web configuration: TLS with Cert and Key, basic auth for User
	User       string
	Password   string // in clear; the file holds its bcrypt hash
	Roots      *x509.CertPool
}

// Write creates the authority, the server certificate and a web
// configuration in dir for user with password, bcrypt-hashed at the
// lowest cost to keep tests fast.
func Write(dir, user, password string) (Files, error) {
	f := Files{
		CACert:     filepath.Join(dir, "ca.pem"),
		Cert:       filepath.Join(dir, "server.pem"),
		Key:        filepath.Join(dir, "server-key.pem"),
		ConfigFile: filepath.Join(dir, "web-config.yml"),
		User:       user,
		Password:   password,
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, fmt.Errorf("cannot generate the CA key: %w", err)
	}
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "bitville-apm test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return f, fmt.Errorf("cannot sign the CA certificate: %w", err)
	}
	ca, err = x509.ParseCertificate(caDER)
	if err != nil {
		return f, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, fmt.Errorf("cannot generate the server key: %w", err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return f, fmt.Errorf("cannot sign the server certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return f, err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		return f, fmt.Errorf("cannot hash the password: %w", err)
	}
	config := fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  %s: %s\n", f.Cert, f.Key, user, hash)
	for _, w := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{f.CACert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644},
		{f.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}), 0o644},
		{f.Key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600},
		{f.ConfigFile, []byte(config), 0o600},
	} {
		if err := os.WriteFile(w.path, w.data, w.mode); err != nil {
			return f, err
		}
	}
	f.Roots = x509.NewCertPool()
	f.Roots.AddCert(ca)
	return f, nil
}

// Client returns an HTTP client that trusts only the authority and gives
// up after timeout.
func (f Files) Client(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: f.Roots, MinVersion: tls.VersionTLS12},
			DisableKeepAlives: true,
		},
	}
}

// Get requests url with c, with basic authentication unless user is "",
// and returns the status, the body and the headers of the answer.
func Get(c *http.Client, url, user, password string) (status int, body string, header http.Header, err error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return 0, "", nil, err
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", nil, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, "", resp.Header, fmt.Errorf("GET %s: cannot read the body: %w", url, err)
	}
	return resp.StatusCode, string(b), resp.Header, nil
}
