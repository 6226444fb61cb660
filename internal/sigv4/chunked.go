package sigv4

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// maxChunk bounds one signed chunk, which is held whole until its
// signature is checked (the SDKs send 64 KiB; minio-go up to 16 MiB is
// allowed by AWS, so the same).
const maxChunk = 16 << 20

// maxTrailer bounds the trailing headers of a chunked body.
const maxTrailer = 16 << 10

func newByteReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, 64<<10) }

// chunkedReader decodes an aws-chunked body:
//
//	SIZE[;chunk-signature=SIG]\r\nDATA\r\n … 0[;chunk-signature=SIG]\r\n[TRAILERS]\r\n
//
// A signed chunk is read whole and released only once its signature (the
// chain from the request's seed signature) matches; an unsigned one
// streams. The trailers, signed or not, land in trailer.
type chunkedReader struct {
	src       *bufio.Reader
	closer    io.Closer
	remaining int64 // declared decoded length left, -1 unknown
	signed    bool
	trailers  bool
	declared  map[string]bool // x-amz-trailer: the trailers the request announced
	trailer   http.Header

	key     []byte
	prevSig string
	amzDate string
	scope   string

	buf   []byte // a verified signed chunk not yet read
	left  int64  // bytes of the current unsigned chunk not yet read
	done  bool
	err   error
	total int64
}

func declaredTrailers(h string) map[string]bool {
	out := map[string]bool{}
	for _, t := range strings.Split(h, ",") {
		if t = strings.ToLower(strings.TrimSpace(t)); t != "" {
			out[t] = true
		}
	}
	return out
}

func (c *chunkedReader) Close() error { return c.closer.Close() }

func incomplete(format string, args ...any) *Error {
	return errorf(http.StatusBadRequest, "IncompleteBody", format, args...)
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	for {
		if c.err != nil {
			return 0, c.err
		}
		if len(c.buf) > 0 {
			n := copy(p, c.buf)
			c.buf = c.buf[n:]
			return n, nil
		}
		if c.left > 0 {
			if int64(len(p)) > c.left {
				p = p[:c.left]
			}
			n, err := c.src.Read(p)
			c.left -= int64(n)
			if err == io.EOF {
				err = incomplete("the body ended inside a chunk")
			}
			if err != nil {
				c.err = err
			}
			if c.left == 0 && c.err == nil {
				c.err = c.crlf()
			}
			if n > 0 {
				return n, nil
			}
			continue
		}
		if c.done {
			return 0, io.EOF
		}
		c.err = c.next()
	}
}

// crlf consumes the CRLF after a chunk's data; the error is kept for the
// next Read.
func (c *chunkedReader) crlf() error {
	var b [2]byte
	if _, err := io.ReadFull(c.src, b[:]); err != nil || b != [2]byte{'\r', '\n'} {
		return incomplete("a chunk's data is not followed by CRLF")
	}
	return nil
}

// next reads the header of the next chunk (and a signed chunk's data).
func (c *chunkedReader) next() error {
	line, err := c.line(256)
	if err == io.EOF {
		return incomplete("the body ended before its last chunk")
	}
	if err != nil {
		return err
	}
	sizeStr, ext, _ := strings.Cut(line, ";")
	size, err := strconv.ParseInt(strings.TrimSpace(sizeStr), 16, 64)
	if err != nil || size < 0 || size > maxChunk {
		return incomplete("chunk size %q is not a hex size up to %d", sizeStr, maxChunk)
	}
	var sig string
	if c.signed {
		name, val, _ := strings.Cut(ext, "=")
		if name != "chunk-signature" || val == "" {
			return errorf(http.StatusForbidden, "SignatureDoesNotMatch", "a chunk carries no chunk-signature")
		}
		sig = val
	}
	c.total += size
	if c.remaining >= 0 && c.total > c.remaining {
		return incomplete("the chunks hold more than the x-amz-decoded-content-length of %d", c.remaining)
	}
	if size == 0 {
		if c.signed {
			if err := c.verify(sig, nil); err != nil {
				return err
			}
		}
		if err := c.readTrailers(); err != nil {
			return err
		}
		if c.remaining >= 0 && c.total != c.remaining {
			return incomplete("the chunks hold %d bytes, x-amz-decoded-content-length says %d", c.total, c.remaining)
		}
		c.done = true
		return nil
	}
	if !c.signed {
		c.left = size
		return nil
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(c.src, data); err != nil {
		return incomplete("the body ended inside a chunk")
	}
	if err := c.crlf(); err != nil {
		return err
	}
	if err := c.verify(sig, data); err != nil {
		return err
	}
	c.buf = data
	return nil
}

func (c *chunkedReader) verify(sig string, data []byte) error {
	sum := sha256.Sum256(data)
	sts := "AWS4-HMAC-SHA256-PAYLOAD\n" + c.amzDate + "\n" + c.scope + "\n" + c.prevSig + "\n" +
		emptySHA256 + "\n" + hex.EncodeToString(sum[:])
	want := hex.EncodeToString(hmacSHA256(c.key, []byte(sts)))
	if subtle.ConstantTimeCompare([]byte(want), []byte(sig)) != 1 {
		return errorf(http.StatusForbidden, "SignatureDoesNotMatch", "a chunk's signature does not match")
	}
	c.prevSig = sig
	return nil
}

// readTrailers reads what follows the last chunk: trailing headers (when
// the payload has them) and the blank line.
func (c *chunkedReader) readTrailers() error {
	var raw strings.Builder
	var trailerSig string
	size := 0
	for {
		line, err := c.line(maxTrailer)
		if err == io.EOF {
			// Some clients end the body without the final blank line.
			break
		}
		if err != nil {
			return err
		}
		if line == "" {
			// minio-go (as AWS documents it) ends the signed trailers
			// with a blank line before their signature.
			if c.signed && c.trailers && trailerSig == "" && raw.Len() > 0 {
				continue
			}
			break
		}
		if size += len(line); size > maxTrailer {
			return incomplete("the trailers are longer than %d bytes", maxTrailer)
		}
		if !c.trailers {
			return incomplete("unexpected data after the last chunk")
		}
		name, val, ok := strings.Cut(line, ":")
		if !ok {
			return incomplete("trailer %q is not NAME:VALUE", line)
		}
		name = strings.ToLower(strings.TrimSpace(name))
		val = strings.TrimSpace(val)
		if name == "x-amz-trailer-signature" {
			trailerSig = val
			continue
		}
		if len(c.declared) > 0 && !c.declared[name] {
			return errorf(http.StatusBadRequest, "MalformedTrailerError", "trailer %s was not announced in x-amz-trailer", name)
		}
		c.trailer.Add(name, val)
		raw.WriteString(name + ":" + val + "\n")
	}
	if c.signed && c.trailers {
		sum := sha256.Sum256([]byte(raw.String()))
		sts := "AWS4-HMAC-SHA256-TRAILER\n" + c.amzDate + "\n" + c.scope + "\n" + c.prevSig + "\n" + hex.EncodeToString(sum[:])
		want := hex.EncodeToString(hmacSHA256(c.key, []byte(sts)))
		if subtle.ConstantTimeCompare([]byte(want), []byte(trailerSig)) != 1 {
			return errorf(http.StatusForbidden, "SignatureDoesNotMatch", "the trailer's signature does not match")
		}
	}
	return nil
}

// line reads one CRLF- (or LF-) terminated line of at most max bytes.
func (c *chunkedReader) line(max int) (string, error) {
	var b []byte
	for {
		frag, err := c.src.ReadSlice('\n')
		b = append(b, frag...)
		if len(b) > max {
			return "", incomplete("a chunk header or trailer is longer than %d bytes", max)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF && len(b) == 0 {
			return "", io.EOF
		}
		if err != nil {
			return "", incomplete("the body ended inside a chunk header")
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
}
