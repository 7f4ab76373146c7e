"""A local stand-in for WeChat's servers, following WeChat's documented contract
(signatures, encryption, error codes). Used by the tests and by `make demo`; never in
production. One module per API family: `pay` (payment/refund notices), `transfer`
(merchant transfer bills), `miniprogram` (stable_token, getwxacodeunlimit)."""
