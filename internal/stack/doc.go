// Package stack loads a stack folder (manifest templates and values files)
// and renders it with Go's text/template and a few helpers, as helm
// renders a chart. It runs in the CLI; it knows nothing of the server, and
// the rendered manifests it returns are what the server decodes, checks
// and applies as one unit.
package stack
