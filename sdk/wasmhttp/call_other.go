//go:build !wasip1

package wasmhttp

// call fails outside a Wasm function: there is no host to send through.
func call([]byte) ([]byte, uint32) {
	return []byte("outgoing calls through berth_http work only in a Wasm function (GOOS=wasip1) run by Berth"), uint32(CodeUnavailable)
}
