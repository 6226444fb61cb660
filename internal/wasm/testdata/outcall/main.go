// Command outcall is a Wasm function for the tests: it calls the URL in
// its query through sdk/wasmhttp and answers with what it got.
//
//	GET  /get?url=U    the upstream's status in X-Upstream-Status, its body
//	POST /post?url=U   posts the request's body to U, the same answer
//
// A call that fails answers 502 with "call error (KIND): …", KIND what
// errors.Is matches among the package's sentinels.
package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"strconv"

	"berth.dev/berth/sdk/wasmhttp"
)

func main() {
	cgi.Serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target := r.URL.Query().Get("url")
		var res *http.Response
		var err error
		switch r.URL.Path {
		case "/post":
			res, err = wasmhttp.Post(target, "text/plain", r.Body)
		default:
			res, err = wasmhttp.Get(target)
		}
		if err != nil {
			kind := "other"
			for _, k := range []struct {
				name string
				err  error
			}{
				{"refused", wasmhttp.ErrRefused}, {"invalid", wasmhttp.ErrInvalid}, {"failed", wasmhttp.ErrFailed},
				{"too large", wasmhttp.ErrTooLarge}, {"timeout", wasmhttp.ErrTimeout}, {"unavailable", wasmhttp.ErrUnavailable},
			} {
				if errors.Is(err, k.err) {
					kind = k.name
				}
			}
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprintf(w, "call error (%s): %v", kind, err)
			return
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprintf(w, "read error: %v", err)
			return
		}
		w.Header().Set("X-Upstream-Status", strconv.Itoa(res.StatusCode))
		w.Header().Set("X-Upstream-Echo", res.Header.Get("X-Echo"))
		w.Write(b)
	}))
}
