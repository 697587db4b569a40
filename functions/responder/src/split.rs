//! Splitting an answer into WhatsApp messages: a text message holds at most 4096
//! characters, so longer answers go out as ordered parts, cut at a paragraph break, else
//! at the end of a sentence, else between words, and only as a last resort inside a word.
//! Every message is billed (Meta charges per service message since October 2026), so
//! texts that go out together ([`pack`]) share a message whenever they fit in one.

/// WhatsApp's limit for a text message body, in characters.
pub const WHATSAPP_TEXT_LIMIT: usize = 4096;

/// `text` in parts of at most `limit` characters (at least 1), trimmed, none empty.
pub fn split_message(text: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(1);
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        // The byte offset just past `limit` characters, if the rest is longer.
        let Some((window_end, _)) = rest.char_indices().nth(limit) else {
            parts.push(rest.to_owned());
            break;
        };
        let window = &rest[..window_end];
        let cut = best_cut(window).unwrap_or(window_end);
        let (part, tail) = rest.split_at(cut);
        let part = part.trim_end();
        if !part.is_empty() {
            parts.push(part.to_owned());
        }
        rest = tail.trim_start();
    }
    parts
}

/// `texts` (a transcript, a summary, an answer: in the order they go out) as few
/// messages of at most `limit` characters as keeps each text whole where it fits: each
/// text is split as [`split_message`] does, then consecutive pieces share a message,
/// a blank line apart, while they fit.
pub fn pack<S: AsRef<str>>(texts: impl IntoIterator<Item = S>, limit: usize) -> Vec<String> {
    let limit = limit.max(1);
    let mut messages: Vec<String> = Vec::new();
    for piece in texts
        .into_iter()
        .flat_map(|text| split_message(text.as_ref(), limit))
    {
        match messages.last_mut() {
            Some(last) if last.chars().count() + 2 + piece.chars().count() <= limit => {
                last.push_str("\n\n");
                last.push_str(&piece);
            }
            _ => messages.push(piece),
        }
    }
    messages
}

/// Where to cut `window` (a byte offset after the kept text), preferring paragraph
/// breaks, then sentence ends, then line breaks, then spaces, and never in the first
/// half of the window when a later break exists (parts stay reasonably full).
fn best_cut(window: &str) -> Option<usize> {
    let floor = window.len() / 2;
    let after = |pattern: &str| {
        window
            .rmatch_indices(pattern)
            .map(|(i, m)| i + m.len())
            .find(|&i| i > floor)
    };
    if let Some(i) = after("\n\n") {
        return Some(i);
    }
    let sentence = [
        ". ", "! ", "? ", ".\n", "!\n", "?\n", "。", "！", "？", "… ",
    ]
    .iter()
    .filter_map(|p| after(p))
    .max();
    if sentence.is_some() {
        return sentence;
    }
    if let Some(i) = after("\n") {
        return Some(i);
    }
    window
        .char_indices()
        .rev()
        .find(|&(i, c)| c.is_whitespace() && i > 0)
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_texts_are_one_part() {
        assert_eq!(split_message("  hello  ", 4096), vec!["hello"]);
        assert!(split_message("   ", 4096).is_empty());
    }

    #[test]
    fn long_texts_split_at_paragraphs_then_sentences_then_words() {
        let para = format!("{}\n\n{}", "a".repeat(60), "b".repeat(30));
        assert_eq!(
            split_message(&para, 80),
            vec!["a".repeat(60), "b".repeat(30)]
        );
        let sentences = "One sentence here. Another one follows! And a third one? Yes.";
        let parts = split_message(sentences, 40);
        assert_eq!(parts[0], "One sentence here. Another one follows!");
        let words = "word ".repeat(30);
        let parts = split_message(&words, 22);
        assert!(
            parts
                .iter()
                .all(|p| p.chars().count() <= 22 && p.ends_with("word"))
        );
        let unbroken = "x".repeat(50);
        assert_eq!(split_message(&unbroken, 20).len(), 3);
    }

    #[test]
    fn texts_that_fit_together_share_one_message() {
        assert_eq!(
            pack(["Heard this.", "  ", "The answer."], 4096),
            vec!["Heard this.\n\nThe answer."]
        );
        // Two texts too long together stay apart, each whole.
        let (a, b) = ("a".repeat(60), "b".repeat(30));
        assert_eq!(pack([&a, &b], 80), vec![a.clone(), b.clone()]);
        // The tail of a long text shares a message with the next one.
        let long = format!("{}\n\n{}", "x".repeat(70), "y".repeat(10));
        assert_eq!(
            pack([long.as_str(), "z"], 80),
            vec!["x".repeat(70), format!("{}\n\nz", "y".repeat(10))]
        );
        assert!(pack(Vec::<String>::new(), 80).is_empty());
    }

    #[test]
    fn parts_respect_the_limit_in_characters_and_keep_every_word_in_order() {
        let text = "¿Qué tal? Ñandú corre rápido por la pampa. 😀 ".repeat(300);
        let parts = split_message(&text, WHATSAPP_TEXT_LIMIT);
        assert!(parts.len() > 1);
        assert!(
            parts
                .iter()
                .all(|p| p.chars().count() <= WHATSAPP_TEXT_LIMIT)
        );
        let rejoined: Vec<&str> = parts.iter().flat_map(|p| p.split_whitespace()).collect();
        let original: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(rejoined, original);
    }
}
