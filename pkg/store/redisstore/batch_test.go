package redisstore

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/internal/testenv"
)

// pipeHook holds the first pipeline of script calls until released and
// records the size of each; with twice set it sends each pipeline twice,
// as go-redis does when a connection drops before the replies are read.
type pipeHook struct {
	hold    chan struct{}
	held    chan struct{} // closed once the first pipeline waits
	once    sync.Once
	mu      sync.Mutex
	sizes   []int
	entered atomic.Int64
	twice   bool
}

func newPipeHook() *pipeHook {
	return &pipeHook{hold: make(chan struct{}), held: make(chan struct{})}
}

func (h *pipeHook) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *pipeHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *pipeHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if cmds[0].Name() != "evalsha" {
			return next(ctx, cmds) // a new connection's set-up
		}
		h.mu.Lock()
		h.sizes = append(h.sizes, len(cmds))
		h.mu.Unlock()
		if h.entered.Add(1) == 1 {
			h.once.Do(func() { close(h.held) })
			<-h.hold
		}
		if h.twice {
			if err := next(ctx, cmds); err != nil {
				return err
			}
		}
		return next(ctx, cmds)
	}
}

// Calls that arrive while a batch is on the wire go out together, each
// gets its own reply, and a lone call goes out at once.
func TestBatchSendsCallsThatArriveTogether(t *testing.T) {
	c := redisClient(t)
	h := newPipeHook()
	c.AddHook(h)
	s := newStore(t, c)
	ctx := context.Background()

	first := make(chan error, 1)
	go func() {
		_, err := s.Acquire(ctx, claim("first"), idempotency.AcquireOptions{})
		first <- err
	}()
	<-h.held // the first call is on the wire
	const n = 20
	claims := make([]idempotency.Claim, n)
	var wg sync.WaitGroup
	results := make([]idempotency.AcquireResult, n)
	errs := make([]error, n)
	for i := range n {
		claims[i] = claim("k" + strconv.Itoa(i%10)) // pairs race for one key
		wg.Go(func() { results[i], errs[i] = s.Acquire(ctx, claims[i], idempotency.AcquireOptions{}) })
	}
	require.Eventually(t, func() bool {
		s.batch.mu.Lock()
		defer s.batch.mu.Unlock()
		return len(s.batch.queue) == n
	}, 5*time.Second, time.Millisecond, "the calls queue behind the batch on the wire")
	close(h.hold)
	require.NoError(t, <-first)
	wg.Wait()

	acquired := map[string]int{}
	for i := range n {
		require.NoError(t, errs[i])
		if results[i].State == idempotency.Acquired {
			acquired[claims[i].Key]++
		} else {
			assert.Equal(t, idempotency.InFlight, results[i].State)
		}
	}
	assert.Len(t, acquired, 10, "every key claimed")
	for k, got := range acquired {
		assert.Equal(t, 1, got, "key %s claimed once", k)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	assert.Equal(t, []int{1, n}, h.sizes, "one call, then the twenty that queued, as one pipeline")
}

// A call whose ctx ends while it waits in the queue returns at once and is
// never sent.
func TestBatchCallCancelledInTheQueueIsNotSent(t *testing.T) {
	c := redisClient(t)
	h := newPipeHook()
	c.AddHook(h)
	s := newStore(t, c)
	go func() { _, _ = s.Acquire(context.Background(), claim("first"), idempotency.AcquireOptions{}) }()
	<-h.held

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.Acquire(ctx, claim("cancelled"), idempotency.AcquireOptions{})
		done <- err
	}()
	require.Eventually(t, func() bool {
		s.batch.mu.Lock()
		defer s.batch.mu.Unlock()
		return len(s.batch.queue) == 1
	}, 5*time.Second, time.Millisecond)
	cancel()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(2 * time.Second):
		t.Fatal("a cancelled call waited for the batch ahead of it")
	}
	close(h.hold)
	// The queue is taken after the first batch: nothing of it is sent.
	_, err := s.Acquire(context.Background(), claim("after"), idempotency.AcquireOptions{})
	require.NoError(t, err)
	n, err := c.Exists(context.Background(), s.Key("cancelled")).Result()
	require.NoError(t, err)
	assert.Zero(t, n, "the cancelled call wrote nothing")
}

// Redis that lost its scripts (restart, failover, SCRIPT FLUSH) ran
// nothing: the batch sends their source and every call gets its answer.
func TestBatchAfterScriptFlush(t *testing.T) {
	c := redisClient(t)
	s := newStore(t, c)
	ctx := context.Background()
	require.NoError(t, s.Ping(ctx))
	require.NoError(t, c.ScriptFlush(ctx).Err())
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			r, err := s.Acquire(ctx, claim("flushed"+strconv.Itoa(i)), idempotency.AcquireOptions{})
			if assert.NoError(t, err) {
				assert.Equal(t, idempotency.Acquired, r.State)
			}
		})
	}
	wg.Wait()
}

// The sender goroutine exits when idle, so a Store needs no Close, and
// the next call starts another.
func TestBatchSenderExitsWhenIdle(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the idle exit")
	}
	c := redisClient(t)
	s := newStore(t, c)
	ctx := context.Background()
	_, err := s.Acquire(ctx, claim("a"), idempotency.AcquireOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		s.batch.mu.Lock()
		defer s.batch.mu.Unlock()
		return !s.batch.running
	}, idleExit+3*time.Second, 50*time.Millisecond, "the sender exits")
	_, err = s.Acquire(ctx, claim("b"), idempotency.AcquireOptions{})
	require.NoError(t, err)
}

func TestBatchErrorClasses(t *testing.T) {
	_, err := net.Dial("tcp", "127.0.0.1:1") // nothing listens on port 1
	assert.True(t, isDialError(err), "%v", err)
	assert.False(t, isDialError(errors.New("ERR something")))
	assert.False(t, isDialError(context.DeadlineExceeded))

	// Only a deadline's error may become errNoAnswer: a reply, even
	// "nothing there" (redis.Nil) or an error reply, stands.
	assert.True(t, timedOut(context.DeadlineExceeded))
	assert.True(t, timedOut(&net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}))
	assert.False(t, timedOut(redis.Nil))
	assert.False(t, timedOut(errors.New("OOM command not allowed")))
}

// A batch sent twice (go-redis re-sends a pipeline whose connection
// dropped) makes no second claimant: each caller gets the second run's
// answer, which for the claim's winner is still acquired, and the records
// written are the winners'.
func TestBatchSentTwice(t *testing.T) {
	c := redisClient(t)
	h := newPipeHook()
	h.twice = true
	c.AddHook(h)
	s := newStore(t, c)
	ctx := context.Background()
	go func() { _, _ = s.Acquire(ctx, claim("first"), idempotency.AcquireOptions{}) }()
	<-h.held
	const n = 10
	claims := make([]idempotency.Claim, n)
	results := make([]idempotency.AcquireResult, n)
	var wg sync.WaitGroup
	for i := range n {
		claims[i] = claim("twice" + strconv.Itoa(i%5))
		wg.Go(func() {
			var err error
			results[i], err = s.Acquire(ctx, claims[i], idempotency.AcquireOptions{})
			assert.NoError(t, err)
		})
	}
	require.Eventually(t, func() bool {
		s.batch.mu.Lock()
		defer s.batch.mu.Unlock()
		return len(s.batch.queue) == n
	}, 5*time.Second, time.Millisecond)
	close(h.hold)
	wg.Wait()
	winners := map[string]idempotency.Claim{}
	for i, r := range results {
		if r.State == idempotency.Acquired {
			_, dup := winners[claims[i].Key]
			require.False(t, dup, "key %s claimed twice", claims[i].Key)
			winners[claims[i].Key] = claims[i]
		} else {
			assert.Equal(t, idempotency.InFlight, r.State)
		}
	}
	require.Len(t, winners, 5)
	for k, w := range winners {
		wg.Go(func() {
			assert.NoError(t, s.Complete(ctx, w, &idempotency.Record{Status: 201, Body: []byte(k)}))
		})
	}
	wg.Wait()
	for k, w := range winners {
		e, err := s.Get(ctx, k)
		require.NoError(t, err)
		assert.Equal(t, idempotency.Completed, e.State)
		assert.Equal(t, w.Token, e.Token)
		assert.Equal(t, k, string(e.Record.Body))
	}
}

// An Acquire whose ctx ends while its batch is on the wire returns at
// once; the engine's Release of its claim comes after it on the same
// connection, so the key ends free, never claimed by nobody.
func TestBatchReleaseFollowsACancelledAcquire(t *testing.T) {
	c := redisClient(t)
	h := newPipeHook()
	c.AddHook(h)
	s := newStore(t, c)
	cl := claim("orphan")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.Acquire(ctx, cl, idempotency.AcquireOptions{})
		done <- err
	}()
	<-h.held // the Acquire is on the wire
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	released := make(chan error, 1)
	go func() { released <- s.Release(context.Background(), cl) }()
	require.Eventually(t, func() bool {
		s.batch.mu.Lock()
		defer s.batch.mu.Unlock()
		return len(s.batch.queue) == 1
	}, 5*time.Second, time.Millisecond)
	close(h.hold)
	require.NoError(t, <-released)
	n, err := c.Exists(context.Background(), s.Key(cl.Key)).Result()
	require.NoError(t, err)
	assert.Zero(t, n, "the claim the cancelled Acquire made is released")
}

// A dial failure fails the calls made within downFor of it, not calls made
// once the server is back.
func TestBatchDialFailureDoesNotOutlastDownFor(t *testing.T) {
	srv := testenv.StartRedis(t)
	ctx := context.Background()
	s, err := NewFromURL(ctx, srv.URL()+"?restart_grace=0", Options{})
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.Ping(ctx))
	srv.Stop()
	_, err = s.Get(ctx, "k")
	require.ErrorIs(t, err, idempotency.ErrStoreUnavailable)
	require.NoError(t, srv.Start())
	o, err := redis.ParseURL(srv.URL())
	require.NoError(t, err)
	probe := redis.NewClient(o)
	defer probe.Close()
	require.Eventually(t, func() bool { return probe.Ping(ctx).Err() == nil }, 10*time.Second, 50*time.Millisecond)
	// Past downFor (and go-redis's pool re-dialling about once a second),
	// the store's next call must reach it.
	time.Sleep(downFor + 500*time.Millisecond)
	_, err = s.Get(ctx, "k")
	assert.ErrorIs(t, err, idempotency.ErrNotFound, "the first call after the server came back")
}

// A Cluster client's calls are not batched: a pipeline would wait for
// every master it touches.
func TestClusterCallsAreNotBatched(t *testing.T) {
	c := clusterClient(t)
	h := newPipeHook()
	close(h.hold)
	c.AddHook(h)
	s := newStore(t, c)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			r, err := s.Acquire(context.Background(), claim("cl"+strconv.Itoa(i)), idempotency.AcquireOptions{})
			if assert.NoError(t, err) {
				assert.Equal(t, idempotency.Acquired, r.State)
			}
		})
	}
	wg.Wait()
	h.mu.Lock()
	defer h.mu.Unlock()
	assert.Empty(t, h.sizes, "no pipeline of script calls")
}
