// Command oci-registry serves an in-memory OCI registry with the OCI 1.1
// referrers API (go-containerregistry's registry package) on a loopback
// port, for kiln's tests of attaching documents through that API: the
// registry Debian ships (docker-registry 2.8) has no referrers API, and the
// registries that have one (zot, distribution v3 with it) are not served by
// the Go module proxy this project builds its tools from.
//
// Prints `127.0.0.1:<port>` on stdout once it listens, and serves until its
// stdin is closed (so it dies with the test that started it).
package main

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "oci-registry:", err)
		os.Exit(1)
	}
	fmt.Println(listener.Addr().String())
	handler := registry.New(
		registry.WithReferrersSupport(true),
		registry.Logger(log.New(io.Discard, "", 0)),
	)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	if err := http.Serve(listener, handler); err != nil {
		fmt.Fprintln(os.Stderr, "oci-registry:", err)
		os.Exit(1)
	}
}
