package v1

// The media types of a WebAssembly module pushed as an OCI artifact (the
// CNCF TAG Runtime's Wasm OCI artifact layout, which wasmtime, Spin and
// containerd's runwasi read): a config of MediaTypeWasmConfig and one
// layer of MediaTypeWasmLayer holding the module's bytes.
const (
	MediaTypeWasmConfig = "application/vnd.wasm.config.v1+json"
	MediaTypeWasmLayer  = "application/vnd.wasm.content.layer.v1+wasm"
)
