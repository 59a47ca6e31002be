//! Drives the mock over real HTTP and reassembles its responses the way a client
//! would, so the wire formats are checked end to end.

use corral_mockllm::{MockLlm, Turn};
use serde_json::{json, Value};

/// `data:` payloads of an SSE body, paired with their `event:` name if any.
fn sse(body: &str) -> Vec<(Option<String>, String)> {
    body.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|frame| {
            let mut event = None;
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = Some(e.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            (event, data)
        })
        .collect()
}

async fn post(url: String, key_header: (&str, &str), body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header(key_header.0, key_header.1)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn openai_streaming_tool_calls_and_text_reassemble() {
    let args = json!({"command": "echo hello && ls -la /workspace", "timeout_secs": 5});
    let mock = MockLlm::start([
        Turn::tool_call("bash", args.clone())
            .with_text("Let me look.")
            .with_usage(11, 7),
        Turn::text("All done, the answer is 42."),
    ])
    .await
    .unwrap();
    let url = format!("{}/chat/completions", mock.openai_base_url());
    let body = json!({"model": "gpt-x", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "hi"}]});
    let resp = post(
        url.clone(),
        ("authorization", "Bearer sk-real"),
        body.clone(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let frames = sse(&resp.text().await.unwrap());
    assert_eq!(frames.last().unwrap().1, "[DONE]");
    let mut text = String::new();
    let mut name = String::new();
    let mut arguments = String::new();
    let mut id = String::new();
    let mut finish = Value::Null;
    let mut usage = Value::Null;
    for (_, data) in &frames[..frames.len() - 1] {
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk");
        if let Some(u) = v.get("usage") {
            usage = u.clone();
        }
        let Some(choice) = v["choices"].get(0) else {
            continue;
        };
        if !choice["finish_reason"].is_null() {
            finish = choice["finish_reason"].clone();
        }
        if let Some(t) = choice["delta"]["content"].as_str() {
            text.push_str(t);
        }
        if let Some(calls) = choice["delta"]["tool_calls"].as_array() {
            for c in calls {
                assert_eq!(c["index"], 0);
                if let Some(i) = c["id"].as_str() {
                    id = i.to_owned();
                }
                if let Some(n) = c["function"]["name"].as_str() {
                    name.push_str(n);
                }
                if let Some(a) = c["function"]["arguments"].as_str() {
                    arguments.push_str(a);
                }
            }
        }
    }
    // Fragmented on the wire, whole once reassembled.
    assert!(
        frames.len() > 6,
        "expected several chunks, got {}",
        frames.len()
    );
    assert_eq!(text, "Let me look.");
    assert_eq!(name, "bash");
    assert!(id.starts_with("call_"));
    assert_eq!(serde_json::from_str::<Value>(&arguments).unwrap(), args);
    assert_eq!(finish, "tool_calls");
    assert_eq!(
        usage,
        json!({"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18})
    );

    // Second turn, non-streaming.
    let resp = post(
        url,
        ("authorization", "Bearer sk-real"),
        json!({"model": "gpt-x", "messages": []}),
    )
    .await;
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "All done, the answer is 42."
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() >= 1);

    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].path, "/v1/chat/completions");
    assert_eq!(reqs[0].header("Authorization"), Some("Bearer sk-real"));
    assert!(reqs[0].is_streaming());
    assert!(!reqs[1].is_streaming());
    assert_eq!(reqs[0].body["messages"][0]["content"], "hi");
    assert_eq!(mock.remaining(), 0);
    assert_eq!(
        mock.served_usage().input_tokens,
        11 + v["usage"]["prompt_tokens"].as_u64().unwrap()
    );
}

#[tokio::test]
async fn openai_stream_without_include_usage_has_no_usage_chunk() {
    let mock = MockLlm::start([Turn::text("x")]).await.unwrap();
    let resp = post(
        format!("{}/chat/completions", mock.openai_base_url()),
        ("authorization", "Bearer k"),
        json!({"model": "m", "stream": true, "messages": []}),
    )
    .await;
    let body = resp.text().await.unwrap();
    assert!(!body.contains("\"usage\""), "{body}");
}

#[tokio::test]
async fn anthropic_streaming_events_reassemble() {
    let args = json!({"path": "notes/a.txt", "content": "ünïcode ✓ line\nnext"});
    let mock = MockLlm::start([Turn::tool_calls([
        ("write_file", args.clone()),
        ("list_files", json!({})),
    ])
    .with_text("Writing.")
    .with_usage(20, 9)])
    .await
    .unwrap();
    let resp = post(
        format!("{}/v1/messages", mock.anthropic_base_url()),
        ("x-api-key", "sk-ant-real"),
        json!({"model": "claude-x", "stream": true, "max_tokens": 100, "messages": [{"role": "user", "content": "go"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let frames = sse(&resp.text().await.unwrap());
    let names: Vec<&str> = frames.iter().map(|(e, _)| e.as_deref().unwrap()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(&names[names.len() - 2..], ["message_delta", "message_stop"]);
    // Blocks: text, tool_use, tool_use.
    let mut blocks: Vec<Value> = Vec::new();
    let mut partial: Vec<String> = Vec::new();
    let mut input_tokens = 0;
    let mut output_tokens = 0;
    let mut stop = Value::Null;
    for (event, data) in &frames {
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["type"].as_str(), event.as_deref());
        match event.as_deref().unwrap() {
            "message_start" => {
                input_tokens = v["message"]["usage"]["input_tokens"].as_u64().unwrap()
            }
            "content_block_start" => {
                assert_eq!(v["index"].as_u64().unwrap() as usize, blocks.len());
                blocks.push(v["content_block"].clone());
                partial.push(String::new());
            }
            "content_block_delta" => {
                let i = v["index"].as_u64().unwrap() as usize;
                match v["delta"]["type"].as_str().unwrap() {
                    "text_delta" => {
                        let t = blocks[i]["text"].as_str().unwrap().to_owned();
                        blocks[i]["text"] = json!(t + v["delta"]["text"].as_str().unwrap());
                    }
                    "input_json_delta" => {
                        partial[i].push_str(v["delta"]["partial_json"].as_str().unwrap())
                    }
                    other => panic!("unexpected delta {other}"),
                }
            }
            "message_delta" => {
                stop = v["delta"]["stop_reason"].clone();
                output_tokens = v["usage"]["output_tokens"].as_u64().unwrap();
            }
            _ => {}
        }
    }
    assert_eq!(blocks.len(), 3);
    assert_eq!(blocks[0], json!({"type": "text", "text": "Writing."}));
    assert_eq!(blocks[1]["type"], "tool_use");
    assert_eq!(blocks[1]["name"], "write_file");
    assert!(blocks[1]["id"].as_str().unwrap().starts_with("toolu_"));
    assert_ne!(blocks[1]["id"], blocks[2]["id"]);
    assert_eq!(serde_json::from_str::<Value>(&partial[1]).unwrap(), args);
    assert_eq!(
        serde_json::from_str::<Value>(&partial[2]).unwrap(),
        json!({})
    );
    assert_eq!(stop, "tool_use");
    assert_eq!((input_tokens, output_tokens), (20, 9));
    assert_eq!(mock.requests()[0].header("x-api-key"), Some("sk-ant-real"));
}

#[tokio::test]
async fn anthropic_non_streaming_message() {
    let mock = MockLlm::start([
        Turn::tool_call("output", json!({"n": 1})),
        Turn::text("done").with_usage(3, 1),
    ])
    .await
    .unwrap();
    let url = format!("{}/v1/messages", mock.anthropic_base_url());
    let v: Value = post(
        url.clone(),
        ("x-api-key", "k"),
        json!({"model": "c", "messages": []}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(v["content"][0]["type"], "tool_use");
    assert_eq!(v["content"][0]["input"], json!({"n": 1}));
    let v: Value = post(
        url,
        ("x-api-key", "k"),
        json!({"model": "c", "messages": []}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["content"], json!([{"type": "text", "text": "done"}]));
    assert_eq!(v["usage"], json!({"input_tokens": 3, "output_tokens": 1}));
}

#[tokio::test]
async fn scripted_errors_and_exhaustion() {
    let mock = MockLlm::start([
        Turn::error(
            429,
            json!({"error": {"message": "slow down", "type": "rate_limit"}}),
        )
        .with_retry_after(2),
        Turn::error(503, json!("overloaded")),
    ])
    .await
    .unwrap();
    let url = format!("{}/chat/completions", mock.openai_base_url());
    let r = post(url.clone(), ("authorization", "Bearer k"), json!({})).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "2");
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["message"],
        "slow down"
    );
    let r = post(url.clone(), ("authorization", "Bearer k"), json!({})).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_none());
    assert_eq!(r.text().await.unwrap(), "overloaded");
    // Past the end of the script: a loud 500 rather than a made-up answer.
    let r = post(url, ("authorization", "Bearer k"), json!({})).await;
    assert_eq!(r.status(), 500);
    assert!(r.text().await.unwrap().contains("exhausted"));
    assert_eq!(mock.requests().len(), 3);
}
