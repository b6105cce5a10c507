package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// rawTarget sends one pre-built HTTP/1.1 request over kept-alive
// connections, each used by one caller at a time, and reads only the
// answer's status and Retry-After. It is the accept route's load
// generator: net/http's client spends two goroutines, channel hand-offs
// and a request's headers per call, which on a machine where the
// generator shares the CPUs with the gateway is CPU taken from the server
// under test. This one costs a write, a read and the answer's parse, as
// wrk's generator does, so that the rates it offers are not bounded by
// its own cost.
type rawTarget struct {
	addr    string
	request []byte
	idle    chan *rawConn
	timeout time.Duration
}

type rawConn struct {
	conn net.Conn
	r    *bufio.Reader
}

// newRawTarget builds a POST of body to rawURL with a JSON content type
// and token as its bearer token, keeping up to maxIdle connections.
func newRawTarget(rawURL, token, body string, maxIdle int) (*rawTarget, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("the raw generator needs an http:// URL with a host, not %q", rawURL)
	}
	// The request is only written out, never sent: no context applies.
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, rawURL, strings.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("building the request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("User-Agent", "switchyard-bench")
	var buf bytes.Buffer
	if err := req.Write(&buf); err != nil {
		return nil, fmt.Errorf("writing the request: %w", err)
	}
	return &rawTarget{addr: u.Host, request: buf.Bytes(), idle: make(chan *rawConn, maxIdle), timeout: 30 * time.Second}, nil
}

// do sends the request once, on an idle connection or a new one, and
// returns the answer's status and Retry-After header. A connection that
// fails or that the server closes is not reused.
func (t *rawTarget) do(ctx context.Context) (status int, retryAfter string, err error) {
	var c *rawConn
	select {
	case c = <-t.idle:
	default:
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", t.addr)
		if err != nil {
			return 0, "", fmt.Errorf("dial: %w", err)
		}
		c = &rawConn{conn: conn, r: bufio.NewReaderSize(conn, 4096)}
	}
	keep := false
	defer func() {
		if !keep {
			_ = c.conn.Close()
		}
	}()
	// The context bounds the dial only: a call under way is answered (or
	// times out) even when the measurement's time is up, as net/http's
	// would not be, so that the end of a measurement is no error.
	if err := c.conn.SetDeadline(time.Now().Add(t.timeout)); err != nil {
		return 0, "", fmt.Errorf("setting the deadline: %w", err)
	}
	if _, err := c.conn.Write(t.request); err != nil {
		return 0, "", fmt.Errorf("write: %w", err)
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return 0, "", fmt.Errorf("read: %w", err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return 0, "", fmt.Errorf("reading the body: %w", err)
	}
	if !resp.Close {
		select {
		case t.idle <- c:
			keep = true
		default:
		}
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), nil
}

// close closes the idle connections.
func (t *rawTarget) close() {
	for {
		select {
		case c := <-t.idle:
			_ = c.conn.Close()
		default:
			return
		}
	}
}
