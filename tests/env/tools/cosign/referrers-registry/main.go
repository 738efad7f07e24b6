// Command referrers-registry serves go-containerregistry's in-memory registry with the
// OCI 1.1 referrers API switched on, over TLS on a loopback address. Signet's tests push
// Sigstore bundles to it as referrers; Debian's docker-registry (which has no referrers API)
// covers the tag-schema fallback.
package main

import (
	"flag"
	"log"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (loopback only)")
	cert := flag.String("cert", "", "TLS certificate (PEM)")
	key := flag.String("key", "", "TLS private key (PEM)")
	flag.Parse()
	if !strings.HasPrefix(*addr, "127.0.0.1:") {
		log.Fatalf("refusing to listen on %s: tests listen on 127.0.0.1 only", *addr)
	}
	handler := registry.New(registry.WithReferrersSupport(true))
	log.Printf("serving the OCI distribution API with referrers on https://%s", *addr)
	log.Fatal(http.ListenAndServeTLS(*addr, *cert, *key, handler))
}
