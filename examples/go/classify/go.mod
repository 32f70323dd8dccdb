module kiln/examples/classify

go 1.19

require kiln v0.0.0

replace kiln => ../../../go
