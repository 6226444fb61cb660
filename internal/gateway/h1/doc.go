// Package h1 parses HTTP/1.1 request heads for the gateway's own server
// without allocating: offsets into the bytes read, and a verdict. It
// accepts only the plain request a proxy sees almost always (origin-form
// target, HTTP/1.1, CRLF lines, one Host, at most one Content-Length, no
// Transfer-Encoding, Upgrade or Expect) and says NotPlain for everything
// else, valid or not, so that the caller hands it to net/http, whose
// answers to bad input (400, 431, a closed connection) stay the gateway's;
// a head with both Content-Length and Transfer-Encoding it calls Reject
// (the caller answers 400). ParseResponse does the same for an upstream's
// answer.
//
// It owns the grammar of that subset. It does not read from connections,
// build http.Requests or decide what is too large: the caller bounds the
// bytes it offers.
package h1
