package main

// The service under load: a few hundred concurrent requests on 127.0.0.1,
// each answer compared byte for byte with the answer to the same image in
// a single-threaded run (one request at a time, before the load), on
// kiln's LeNet (random weights) and, when present, an ONNX LeNet.  Also the
// image preparation against values worked out by hand, and the errors.

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"math"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// testImages: PNG and JPEG, grey and colour, smaller and larger than 28x28.
func testImages(t *testing.T) [][]byte {
	var out [][]byte
	for i := 0; i < 24; i++ {
		w, h := 12+5*i, 9+7*(i%7) // 12..127 x 9..51
		var img image.Image
		if i%3 == 0 {
			g := image.NewGray(image.Rect(0, 0, w, h))
			for y := 0; y < h; y++ {
				for x := 0; x < w; x++ {
					g.SetGray(x, y, color.Gray{uint8((x*x + 3*y*i) % 256)})
				}
			}
			img = g
		} else {
			c := image.NewRGBA(image.Rect(0, 0, w, h))
			for y := 0; y < h; y++ {
				for x := 0; x < w; x++ {
					c.Set(x, y, color.RGBA{uint8(x * i), uint8(y * 7), uint8((x + y) * i), 255})
				}
			}
			img = c
		}
		var buf bytes.Buffer
		var err error
		if i%2 == 0 {
			err = png.Encode(&buf, img)
		} else {
			err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85})
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, buf.Bytes())
	}
	return out
}

func post(client *http.Client, url string, body []byte) (int, string, error) {
	resp, err := client.Post(url+"/classify", "image/png", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// loadTest: every image once, one at a time; then `requests` at once.
func loadTest(t *testing.T, cfg Config, requests int) {
	c, err := NewClassifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv := httptest.NewServer(c.Handler(filepath.Base(cfg.Model))) // on 127.0.0.1
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}
	images := testImages(t)
	want := make([]string, len(images))
	for i, img := range images {
		status, body, err := post(client, srv.URL, img)
		if err != nil || status != http.StatusOK || !strings.Contains(body, `"top":[{"class":`) {
			t.Fatalf("image %d, single-threaded: %d %v %s", i, status, err, body)
		}
		want[i] = body
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan string, requests)
	for r := 0; r < requests; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			<-start
			i := (r * 7) % len(images)
			status, body, err := post(client, srv.URL, images[i])
			if err != nil || status != http.StatusOK || body != want[i] {
				errs <- fmt.Sprintf("request %d (image %d): %d %v\n got  %s want %s", r, i, status, err, body, want[i])
			}
		}(r)
	}
	close(start)
	wg.Wait()
	close(errs)
	n := 0
	for e := range errs {
		if n++; n <= 5 {
			t.Error(e)
		}
	}
	if n > 0 {
		t.Errorf("%d of %d concurrent answers differ from the single-threaded run", n, requests)
	}
}

func TestLoadLeNet(t *testing.T) {
	loadTest(t, Config{Model: "../../lenet.kiln", Seed: 1}, 300)
}

// The ONNX LeNet of the ONNX importer's tests (tests/onnx/lenet.onnx, made by
// tests/onnx/gen_lenet.py), when it is there.
func TestLoadONNX(t *testing.T) {
	model := "../../../tests/onnx/lenet.onnx"
	if _, err := os.Stat(model); err != nil {
		t.Skip("no ONNX LeNet in tests/onnx")
	}
	loadTest(t, Config{Model: model}, 200)
}

func TestPrepare(t *testing.T) {
	c := &Classifier{c: 1, h: 2, w: 2, mean: []float32{0.5}, std: []float32{0.25}}
	// 4x4 grey: each 2x2 block averages to its own value
	g := image.NewGray(image.Rect(0, 0, 4, 4))
	for y := 0; y < 4; y++ {
		for x := 0; x < 4; x++ {
			g.SetGray(x, y, color.Gray{[]uint8{0, 255, 51, 204}[(y/2)*2+x/2]})
		}
	}
	got := c.Prepare(g)
	for i, v := range []float64{0, 1, 0.2, 0.8} {
		if want := (v - 0.5) / 0.25; math.Abs(float64(got[i])-want) > 1e-5 {
			t.Errorf("pixel %d: got %g, want %g", i, got[i], want)
		}
	}
	// enlarging a 1x1 colour image: every pixel is that colour; channels apart
	c = &Classifier{c: 3, h: 3, w: 3, mean: []float32{0, 0, 0}, std: []float32{1, 1, 1}}
	rgb := image.NewRGBA(image.Rect(0, 0, 1, 1))
	rgb.Set(0, 0, color.RGBA{255, 0, 51, 255})
	got = c.Prepare(rgb)
	for i, v := range got {
		want := []float64{1, 0, 0.2}[i/9]
		if math.Abs(float64(v)-want) > 1e-5 {
			t.Errorf("element %d: got %g, want %g", i, v, want)
		}
	}
}

func TestErrors(t *testing.T) {
	c, err := NewClassifier(Config{Model: "../../lenet.kiln"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.MaxImageBytes = 1 << 16
	srv := httptest.NewServer(c.Handler("lenet.kiln"))
	defer srv.Close()
	if status, body, _ := post(http.DefaultClient, srv.URL, []byte("not an image")); status != 400 ||
		!strings.Contains(body, "not a PNG or JPEG") {
		t.Errorf("garbage: %d %s", status, body)
	}
	resp, _ := http.Get(srv.URL + "/classify")
	if resp.StatusCode != 405 {
		t.Errorf("GET /classify: %d", resp.StatusCode)
	}
	resp.Body.Close()
	if status, body, _ := post(http.DefaultClient, srv.URL, make([]byte, c.MaxImageBytes+1)); status != 413 {
		t.Errorf("too large: %d %s", status, body)
	}
	// a multipart form with the image
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	fw, _ := mw.CreateFormFile("image", "x.png")
	fw.Write(testImages(t)[0])
	mw.Close()
	resp, err = http.Post(srv.URL+"/classify", mw.FormDataContentType(), &form)
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("multipart: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}
	if _, err := NewClassifier(Config{Model: "../../mlp.kiln"}); err == nil || !strings.Contains(err.Error(), "image") {
		t.Errorf("a model that takes no image: %v", err)
	}
	if _, err := NewClassifier(Config{Model: "missing.onnx"}); err == nil {
		t.Error("a missing model was loaded")
	}
	if _, err := os.Stat("../../lenet.kiln"); err != nil {
		t.Fatal(err)
	}
}
