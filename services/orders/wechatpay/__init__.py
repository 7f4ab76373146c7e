"""Orders' outgoing WeChat Pay calls: JSAPI prepay, close, query (lost notices), refund
submission, bills. Over the shared signing client (`shared.wechatpay.client`)."""
