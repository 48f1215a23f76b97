package admin

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
)

// MinTokenLength is the shortest bearer token accepted, in bytes. Generate
// tokens with `openssl rand -hex 32`.
const MinTokenLength = 16

// maxTokenFile bounds what is read from a token file (a file of tokens,
// not a place to point at a log by mistake).
const maxTokenFile = 64 << 10

// Tokens is where the accepted bearer tokens come from: one token given
// at start (StaticToken, from the environment) or a file re-read on every
// API request (TokenFile), so a rotated token is accepted, and the one it
// replaces refused, from the next request on.
type Tokens struct {
	path   string
	static []token
	log    *slog.Logger

	mu      sync.Mutex // guards digest and lastErr
	digest  [sha256.Size]byte
	lastErr string
}

// token is an accepted token as kept in memory: its digest and its id.
type token struct {
	digest [sha256.Size]byte
	id     string
}

// TokenID is how logs name a token: "sha256:" and the first 12 hex digits
// of its SHA-256. An operator finds a token's id with
// `printf %s "$TOKEN" | sha256sum | cut -c1-12`.
func TokenID(tok string) string { return newToken(tok).id }

func newToken(tok string) token {
	d := sha256.Sum256([]byte(tok))
	return token{digest: d, id: "sha256:" + hex.EncodeToString(d[:])[:12]}
}

// StaticToken accepts exactly tok. It refuses a token shorter than
// MinTokenLength or that cannot travel in an Authorization header.
func StaticToken(tok string) (*Tokens, error) {
	tok = strings.TrimSpace(tok)
	if err := checkToken(tok); err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	return &Tokens{static: []token{newToken(tok)}}, nil
}

// TokenFile accepts the tokens in the file at path: one per line, blank
// lines and lines starting with # ignored (two tokens let a rotation
// overlap). The file must load now; later, a file that does not load
// makes every API request fail closed until it loads again.
func TokenFile(path string, log *slog.Logger) (*Tokens, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Tokens{path: path, log: log}
	if _, err := t.current(); err != nil {
		return nil, err
	}
	return t, nil
}

// Describe says where the tokens come from, for the startup log.
func (t *Tokens) Describe() string {
	if t.path == "" {
		return "GOPOTENCY_ADMIN_TOKEN"
	}
	return t.path
}

// IDs returns the ids of the tokens accepted now.
func (t *Tokens) IDs() ([]string, error) {
	toks, err := t.current()
	return tokenIDs(toks), err
}

func tokenIDs(toks []token) []string {
	ids := make([]string, len(toks))
	for i, tk := range toks {
		ids[i] = tk.id
	}
	return ids
}

// current returns the accepted tokens, reading the file when there is one.
func (t *Tokens) current() ([]token, error) {
	if t.path == "" {
		return t.static, nil
	}
	lines, raw, err := readTokenFile(t.path)
	d := sha256.Sum256(raw)
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		if err.Error() != t.lastErr {
			t.log.Error("admin API: the token file does not load; refusing every API request until it does", "error", err)
		}
		t.lastErr = err.Error()
		return nil, err
	}
	toks := make([]token, len(lines))
	for i, l := range lines {
		toks[i] = newToken(l)
	}
	if t.lastErr != "" || (t.digest != d && t.digest != [sha256.Size]byte{}) {
		t.log.Info("admin API: token file loaded", "file", t.path, "token_ids", tokenIDs(toks))
	}
	t.digest, t.lastErr = d, ""
	return toks, nil
}

// readTokenFile returns the tokens in the file at path and its content.
func readTokenFile(path string) ([]string, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("admin token file: %w", err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return nil, nil, fmt.Errorf("admin token file %s: %w", path, err)
	}
	if len(raw) > maxTokenFile {
		return nil, nil, fmt.Errorf("admin token file %s: larger than %d bytes", path, maxTokenFile)
	}
	var toks []string
	for i, line := range bytes.Split(raw, []byte("\n")) {
		s := strings.TrimSpace(string(line))
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if err := checkToken(s); err != nil {
			return nil, nil, fmt.Errorf("admin token file %s: line %d: %w", path, i+1, err)
		}
		toks = append(toks, s)
	}
	if len(toks) == 0 {
		return nil, nil, fmt.Errorf("admin token file %s: no token in it", path)
	}
	return toks, raw, nil
}

// checkToken refuses weak tokens and tokens no client can send: RFC 6750
// bearer tokens are token68 (letters, digits, -._~+/ and trailing =).
// Errors never include the token.
func checkToken(tok string) error {
	if len(tok) < MinTokenLength {
		return fmt.Errorf("%d bytes; at least %d required (generate one with: openssl rand -hex 32)", len(tok), MinTokenLength)
	}
	if !isToken68(tok) {
		return errors.New("only letters, digits and -._~+/ (then = padding) can be sent as a bearer token")
	}
	return nil
}

func isToken68(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/", c) >= 0
		if !ok {
			return false
		}
	}
	return true
}

// Why a request was not authenticated.
var (
	errNoCredentials = errors.New("admin: no bearer token sent")
	errWrongToken    = errors.New("admin: bearer token not accepted")
	errTokenFile     = errors.New("admin: token file unreadable")
)

// authenticate returns the id of the token r presents. Every accepted
// token is compared, in constant time over digests of equal length, so the
// answer's timing says nothing about how much of a guess was right.
func (t *Tokens) authenticate(r *http.Request) (string, error) {
	toks, err := t.current()
	if err != nil {
		return "", fmt.Errorf("%w: %w", errTokenFile, err)
	}
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		return "", errNoCredentials
	}
	scheme, presented, found := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if len(vals) > 1 || !found || !strings.EqualFold(scheme, "Bearer") {
		return "", errWrongToken
	}
	d := sha256.Sum256([]byte(strings.TrimSpace(presented)))
	id := ""
	for _, tk := range toks {
		if subtle.ConstantTimeCompare(d[:], tk.digest[:]) == 1 {
			id = tk.id
		}
	}
	if id == "" {
		return "", errWrongToken
	}
	return id, nil
}
