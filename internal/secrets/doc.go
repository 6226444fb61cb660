// Package secrets owns the values of Secrets and Configs: it seals secret
// values with AES-256-GCM under a key kept in the data dir, stores them,
// and resolves a workload's references for the node agent at container
// creation. Nothing outside this package sees a secret value in plain text
// except the container it is given to; the package never logs values and
// must not hand them to the API's answers.
package secrets
