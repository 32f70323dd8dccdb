// Command classify is a small HTTP service that classifies images with
// kiln: it loads an image classifier once (an ONNX model given on the
// command line, or kiln's LeNet example, examples/lenet.kiln) and serves
// every request with that one model, concurrently.
//
//	classify [-addr 127.0.0.1:8080] [-weights W.safetensors] [-labels L.txt] [-device cpu] [MODEL]
//
// POST a PNG or JPEG image to /classify (the body, or the form file
// "image"); the answer is the five likeliest classes as JSON:
//
//	{"image":{"format":"png","height":28,"width":28},"model":"lenet.kiln",
//	 "top":[{"class":7,"label":"7","probability":0.31}, ...]}
//
// The image is resized to the model's input (an area average when
// shrinking, bilinear when enlarging), turned grey for a one-channel model,
// and normalised with MNIST's mean and deviation (one channel) or
// ImageNet's (three).  Standard library only, besides kiln.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "where to listen")
	weights := flag.String("weights", "", "a .safetensors file with the model's weights (a .kiln model)")
	labelsPath := flag.String("labels", "", "a text file with one class label per line")
	device := flag.String("device", "", "kiln's device: cpu, cuda, ... (default: a GPU if usable, else cpu)")
	seed := flag.Int64("seed", 1, "seed of the random weights of a .kiln model given no -weights")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: classify [flags] [MODEL.onnx | MODEL.kiln]\n"+
			"  (default MODEL: kiln's examples/lenet.kiln)\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 1 {
		flag.Usage()
		os.Exit(2)
	}
	model := flag.Arg(0)
	if model == "" {
		model = defaultModel()
	}
	var labels []string
	if *labelsPath != "" {
		var err error
		if labels, err = readLabels(*labelsPath); err != nil {
			log.Fatal(err)
		}
	}
	t0 := time.Now()
	c, err := NewClassifier(Config{Model: model, Weights: *weights, Device: *device, Labels: labels, Seed: *seed})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for _, note := range c.Notes {
		log.Print(note)
	}
	log.Printf("%s on %s: %d classes, input %dx%dx%d, ready in %v; listening on http://%s",
		model, c.model.Device(), c.classes, c.c, c.h, c.w, time.Since(t0).Round(time.Millisecond), *addr)
	srv := &http.Server{Addr: *addr, Handler: c.Handler(filepath.Base(model)), ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second}
	log.Fatal(srv.ListenAndServe())
}

// defaultModel is kiln's LeNet example, found from this folder or the
// kiln tree's root.
func defaultModel() string {
	for _, p := range []string{"../../lenet.kiln", "examples/lenet.kiln"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	log.Fatal("no MODEL given, and examples/lenet.kiln is not here: run from examples/go/classify or the kiln tree")
	return ""
}

func readLabels(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var labels []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		labels = append(labels, strings.TrimSpace(s.Text()))
	}
	if len(labels) == 0 {
		return nil, errors.New(path + ": no labels")
	}
	return labels, s.Err()
}
