//! The word error rate: how far a transcript is from what was said. Used by the speech
//! tests, the speech benchmarks and whisper-convert's tests, so every figure is scored
//! the same way.

/// Splits `text` into normalised words for [`word_error_rate`]: lower case, accents
/// removed (`está` → `esta`), punctuation dropped (apostrophes inside words kept), hyphens
/// split words.
pub fn normalized_words(text: &str) -> Vec<String> {
    let folded: String = text
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'á' | 'à' | 'â' | 'ä' | 'ã' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'í' | 'ì' | 'î' | 'ï' => 'i',
            'ó' | 'ò' | 'ô' | 'ö' | 'õ' => 'o',
            'ú' | 'ù' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            '’' | '\'' => '\'',
            c if c.is_alphanumeric() => c,
            _ => ' ',
        })
        .collect();
    folded
        .split_whitespace()
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Word error rate of `hypothesis` against `reference`: the word-level edit distance
/// (substitutions, insertions, deletions) over the number of reference words, after
/// [`normalized_words`]. 0.0 is perfect; it can exceed 1.0. An empty reference gives 0.0
/// for an empty hypothesis and the hypothesis' word count otherwise.
pub fn word_error_rate(reference: &str, hypothesis: &str) -> f64 {
    let reference = normalized_words(reference);
    let hypothesis = normalized_words(hypothesis);
    // One row of the Levenshtein table over words.
    let mut row: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, h) in hypothesis.iter().enumerate() {
            let substitution = diagonal + usize::from(r != h);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[hypothesis.len()] as f64 / reference.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_error_rate_counts_edits_per_reference_word() {
        assert_eq!(word_error_rate("the cat sat", "The cat sat."), 0.0);
        assert_eq!(word_error_rate("the cat sat", "the dog sat"), 1.0 / 3.0);
        assert_eq!(word_error_rate("the cat sat", "cat sat down there"), 1.0);
        assert_eq!(
            word_error_rate("Está aquí, ¿verdad?", "esta aqui verdad"),
            0.0
        );
        assert_eq!(word_error_rate("don't stop", "Don’t stop!"), 0.0);
        assert_eq!(word_error_rate("twenty-five", "twenty five"), 0.0);
        assert_eq!(word_error_rate("a b", ""), 1.0);
        assert_eq!(word_error_rate("", ""), 0.0);
        assert_eq!(word_error_rate("", "hello there"), 2.0);
    }
}
