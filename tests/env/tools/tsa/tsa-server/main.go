// tsa-server serves sigstore's timestamp authority (its REST API and in-memory signer, the
// code of timestamp-authority's own `timestamp-server serve`) on one loopback address.
// `timestamp-server serve` cannot be used as is in tests: it always starts a Prometheus
// listener on :2112 (every interface, one fixed port, fatal when taken) and an NTP monitor
// that queries public time servers. Everything else is the upstream code path.
package main

import (
	"flag"
	"log"
	"time"

	"github.com/sigstore/timestamp-authority/v2/pkg/server"
	"github.com/spf13/viper"
)

func main() {
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 0, "port to listen on")
	includeChain := flag.Bool("include-chain-in-response", false, "embed the whole chain in each response")
	flag.Parse()
	// The settings `timestamp-server serve` reads through viper, at its defaults.
	viper.Set("timestamp-signer", "memory")
	viper.Set("timestamp-signer-hash", "sha256")
	viper.Set("enforce-intermediate-eku", true)
	viper.Set("default-policy-oid", "1.3.6.1.4.1.57264.2")
	viper.Set("accepted-policy-oids", []string{"1.3.6.1.4.1.57264.2"})
	viper.Set("include-chain-in-response", *includeChain)
	viper.Set("max-request-body-size", uint64(1<<20))
	srv := server.NewRestAPIServer(*host, *port, []string{"http"}, false, 10*time.Second, 10*time.Second)
	srv.CleanupTimeout = time.Second
	defer srv.Shutdown()
	if err := srv.Serve(); err != nil {
		log.Fatal(err)
	}
}
