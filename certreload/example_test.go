package certreload_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/certbus/certbus/certreload"
)

// A TLS server whose certificate follows renewals. In production, pass
// Watch the system bus (dbus.ConnectSystemBus) so that certbus's
// CertificateEvent triggers the reload; here the files are replaced and
// Reload is called directly, which is what an event or SIGHUP does.
func Example() {
	dir, _ := os.MkdirTemp("", "certreload-example")
	defer os.RemoveAll(dir)
	certFile, keyFile := filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	writePair(certFile, keyFile, "first")

	src, err := certreload.New(certreload.Options{CertFile: certFile, KeyFile: keyFile, SIGHUP: true})
	if err != nil {
		log.Fatal(err)
	}
	if err := src.Watch(nil); err != nil { // nil: no D-Bus here, SIGHUP only
		log.Fatal(err)
	}
	defer src.Close()

	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: src.GetCertificate})
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	fmt.Println("serving:", servedName(ln.Addr()))

	writePair(certFile, keyFile, "renewed")
	if err := src.Reload(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("serving:", servedName(ln.Addr()))

	// A key that does not match is refused; the renewed pair stays.
	writePair(filepath.Join(dir, "other.pem"), keyFile, "other")
	fmt.Println("mismatched pair refused:", src.Reload() != nil)
	fmt.Println("serving:", servedName(ln.Addr()))
	// Output:
	// serving: first
	// serving: renewed
	// mismatched pair refused: true
	// serving: renewed
}

// servedName returns the common name of the certificate the server presents.
func servedName(addr net.Addr) string {
	c, err := tls.Dial("tcp", addr.String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// writePair writes a self-signed certificate named cn and its key.
func writePair(certFile, keyFile, cn string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, DNSNames: []string{"example.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
}
