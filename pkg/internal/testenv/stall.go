package testenv

import (
	"io"
	"net"
	"sync"
	"testing"
)

// StallProxy forwards TCP connections to a real server and can stop
// forwarding at will while keeping every connection open: a server that
// went silent mid-request (a network partition, a stalled disk), which is
// how a test proves a client honours its context in the middle of I/O.
type StallProxy struct {
	Addr string // 127.0.0.1:port to connect to instead of the target

	ln      net.Listener
	mu      sync.Mutex
	stalled bool
	resume  chan struct{}
	conns   []net.Conn
}

// StartStallProxy proxies to target until t ends.
func StartStallProxy(t testing.TB, target string) *StallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: stall proxy: %v", err)
	}
	p := &StallProxy{Addr: ln.Addr().String(), ln: ln, resume: make(chan struct{})}
	go p.accept(target)
	t.Cleanup(p.close)
	return p
}

// Stall stops forwarding bytes in both directions.
func (p *StallProxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stalled {
		p.stalled, p.resume = true, make(chan struct{})
	}
}

// Resume forwards again.
func (p *StallProxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled {
		p.stalled = false
		close(p.resume)
	}
}

// gate blocks while stalled.
func (p *StallProxy) gate() {
	p.mu.Lock()
	stalled, resume := p.stalled, p.resume
	p.mu.Unlock()
	if stalled {
		<-resume
	}
}

func (p *StallProxy) accept(target string) {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go p.pipe(up, c)
		go p.pipe(c, up)
	}
}

func (p *StallProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.gate()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			if err != io.EOF {
				break
			}
			break
		}
	}
	_ = dst.Close()
	_ = src.Close()
}

func (p *StallProxy) close() {
	_ = p.ln.Close()
	p.Resume()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
}
