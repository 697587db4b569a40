//! The texts Remedios sends without the model (command answers, apologies, notes about
//! what it cannot handle), in the user's language: English and Spanish, each of them
//! replaceable by the deployer (`TEXT_<NAME>_<LANG>`, for example `TEXT_RESET_DONE_ES`).
//!
//! The language is the user's own: the one whisper detected in a voice note, else the
//! language of the message's text when it is long enough to tell ([`whatlang`]), else
//! that of the user's earlier messages in the conversation, else English.

use std::collections::HashMap;

use remedios_shared::config::{ConfigError, Env, Family, Vars};

/// A language Remedios has fixed texts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Lang {
    #[default]
    En,
    Es,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Es];

    /// A language code as whisper or a deployer writes it (`es`, `es-MX`, `EN`); `None`
    /// for a language without texts.
    pub fn from_code(code: &str) -> Option<Lang> {
        let primary = code.split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "en" | "eng" => Some(Lang::En),
            "es" | "spa" => Some(Lang::Es),
            _ => None,
        }
    }

    /// The language of `text` when it can be told reliably (a sentence, not a word):
    /// English or Spanish, and `None` for a text plainly in another language.
    pub fn of_text(text: &str) -> Option<Lang> {
        if let Some(info) = whatlang::detect(text)
            && info.is_reliable()
            && !matches!(info.lang(), whatlang::Lang::Eng | whatlang::Lang::Spa)
        {
            return None;
        }
        let ours =
            whatlang::Detector::with_allowlist(vec![whatlang::Lang::Eng, whatlang::Lang::Spa]);
        let info = ours.detect(text)?;
        if !info.is_reliable() {
            return None;
        }
        match info.lang() {
            whatlang::Lang::Spa => Some(Lang::Es),
            _ => Some(Lang::En),
        }
    }

    /// `EN`, `ES`: the suffix of the override variables.
    pub fn suffix(self) -> &'static str {
        match self {
            Lang::En => "EN",
            Lang::Es => "ES",
        }
    }
}

/// One fixed text. `{what}` in a text is the kind of file (image, video…), `{place}` the
/// name of a shared location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FixedText {
    Help,
    ResetDone,
    /// The model host was unavailable on the last attempt.
    Apology,
    /// The model host refused the question for good.
    CannotAnswer,
    /// The model host is misconfigured for us (a wrong URL, model name or key): every
    /// question is refused until an operator fixes it.
    Misconfigured,
    /// The model answered nothing.
    NoAnswer,
    AudioUnsupported,
    SilentAudio,
    Unsupported,
    MediaUnavailable,
    MediaNoCaption,
    /// Put before the answer to a caption.
    CaptionPreface,
    Location,
    LocationNamed,
    Contacts,
    /// The answer to a text when `REPLY_MODE=transcript`.
    TranscriptOnly,
    /// Put before the summary of a long voice note (`SUMMARY`).
    SummaryPreface,
    /// Over `LIMIT_MESSAGES_PER_MINUTE`.
    LimitMinute,
    /// Over `LIMIT_MESSAGES_PER_DAY`.
    LimitDay,
    /// Over `LIMIT_AUDIO_MINUTES_PER_DAY`.
    LimitAudio,
    /// A question the business's material does not cover (`KNOWLEDGE_UNCOVERED=decline`).
    NotCovered,
    /// The user asked for a person (`/human`): one will answer here.
    HandoffAsked,
    /// The user asked for a person, but this number has no staff to hand over to.
    HandoffUnavailable,
    /// The conversation is back with the assistant (`/bot`).
    HandoffBack,
    /// Nobody answered the user within `HANDOFF_TIMEOUT_MINUTES`: the assistant answers again.
    HandoffTimeout,
    /// `/voice on`: answers come as voice notes.
    VoiceOn,
    /// `/voice off`: answers come as text.
    VoiceOff,
    /// A staff number is told that a user asks for a person ({what}: the user's name, {place}: their last messages).
    StaffNotice,
    /// A staff number gets what a user wrote while handed over ({what}: the user's name, {place}: the message).
    StaffForward,
    /// A staff reply to a user who is not waiting for a person.
    StaffNotWaiting,
    /// A staff member handed the user back to the assistant (`/bot`).
    StaffBack,
    /// A staff reply to a user outside WhatsApp's 24-hour window, with no template to send.
    StaffUndelivered,
    /// A staff reply to a user outside the 24-hour window: the re-engagement template went instead.
    StaffTemplateSent,
    /// A staff reply that is not text.
    StaffTextOnly,
}

impl FixedText {
    pub const ALL: [FixedText; 34] = [
        FixedText::Help,
        FixedText::ResetDone,
        FixedText::Apology,
        FixedText::CannotAnswer,
        FixedText::Misconfigured,
        FixedText::NoAnswer,
        FixedText::AudioUnsupported,
        FixedText::SilentAudio,
        FixedText::Unsupported,
        FixedText::MediaUnavailable,
        FixedText::MediaNoCaption,
        FixedText::CaptionPreface,
        FixedText::Location,
        FixedText::LocationNamed,
        FixedText::Contacts,
        FixedText::TranscriptOnly,
        FixedText::SummaryPreface,
        FixedText::LimitMinute,
        FixedText::LimitDay,
        FixedText::LimitAudio,
        FixedText::NotCovered,
        FixedText::HandoffAsked,
        FixedText::HandoffUnavailable,
        FixedText::HandoffBack,
        FixedText::HandoffTimeout,
        FixedText::VoiceOn,
        FixedText::VoiceOff,
        FixedText::StaffNotice,
        FixedText::StaffForward,
        FixedText::StaffNotWaiting,
        FixedText::StaffBack,
        FixedText::StaffUndelivered,
        FixedText::StaffTemplateSent,
        FixedText::StaffTextOnly,
    ];

    /// The name in the override variables (`TEXT_<NAME>_<LANG>`).
    pub fn name(self) -> &'static str {
        match self {
            FixedText::Help => "HELP",
            FixedText::ResetDone => "RESET_DONE",
            FixedText::Apology => "APOLOGY",
            FixedText::CannotAnswer => "CANNOT_ANSWER",
            FixedText::Misconfigured => "MISCONFIGURED",
            FixedText::NoAnswer => "NO_ANSWER",
            FixedText::AudioUnsupported => "AUDIO_UNSUPPORTED",
            FixedText::SilentAudio => "SILENT_AUDIO",
            FixedText::Unsupported => "UNSUPPORTED",
            FixedText::MediaUnavailable => "MEDIA_UNAVAILABLE",
            FixedText::MediaNoCaption => "MEDIA_NO_CAPTION",
            FixedText::CaptionPreface => "CAPTION_PREFACE",
            FixedText::Location => "LOCATION",
            FixedText::LocationNamed => "LOCATION_NAMED",
            FixedText::Contacts => "CONTACTS",
            FixedText::TranscriptOnly => "TRANSCRIPT_ONLY",
            FixedText::SummaryPreface => "SUMMARY_PREFACE",
            FixedText::LimitMinute => "LIMIT_MINUTE",
            FixedText::LimitDay => "LIMIT_DAY",
            FixedText::LimitAudio => "LIMIT_AUDIO",
            FixedText::NotCovered => "NOT_COVERED",
            FixedText::HandoffAsked => "HANDOFF_ASKED",
            FixedText::HandoffUnavailable => "HANDOFF_UNAVAILABLE",
            FixedText::HandoffBack => "HANDOFF_BACK",
            FixedText::HandoffTimeout => "HANDOFF_TIMEOUT",
            FixedText::VoiceOn => "VOICE_ON",
            FixedText::VoiceOff => "VOICE_OFF",
            FixedText::StaffNotice => "STAFF_NOTICE",
            FixedText::StaffForward => "STAFF_FORWARD",
            FixedText::StaffNotWaiting => "STAFF_NOT_WAITING",
            FixedText::StaffBack => "STAFF_BACK",
            FixedText::StaffUndelivered => "STAFF_UNDELIVERED",
            FixedText::StaffTemplateSent => "STAFF_TEMPLATE_SENT",
            FixedText::StaffTextOnly => "STAFF_TEXT_ONLY",
        }
    }

    /// The text Remedios ships with.
    pub fn default_text(self, lang: Lang) -> &'static str {
        match lang {
            Lang::En => en(self),
            Lang::Es => es(self),
        }
    }
}

fn en(text: FixedText) -> &'static str {
    match text {
        FixedText::Help => {
            "Hi, I'm Remedios, an assistant you can chat with here.\n\n\
• Write to me, or send a voice note: I'll answer either.\n\
• I remember our recent messages; send /reset to make me forget them.\n\
• I can't see images, videos or documents, open files or make calls.\n\n\
Send /help to see this again."
        }
        FixedText::ResetDone => {
            "Done: I've forgotten our conversation. What would you like to talk about?"
        }
        FixedText::Apology => {
            "Sorry, I can't answer right now: my thinking machine is not reachable. \
Please send your message again in a little while."
        }
        FixedText::CannotAnswer => {
            "Sorry, I couldn't answer that message: my thinking machine could not take it. \
Could you say it in other words, or more briefly?"
        }
        FixedText::Misconfigured => {
            "Sorry, I can't answer right now: my thinking machine is set up wrongly, and the \
people who run me have been alerted. Please send your message again later."
        }
        FixedText::NoAnswer => "Sorry, I have no answer to that. Could you say it in other words?",
        FixedText::AudioUnsupported => {
            "Sorry, I couldn't listen to that audio. Could you record it again as a voice \
note, or write it?"
        }
        FixedText::SilentAudio => {
            "I couldn't hear any words in that voice note. Could you record it again, or write it?"
        }
        FixedText::Unsupported => {
            "Sorry, I can't read that kind of message yet. I understand text and voice notes."
        }
        FixedText::MediaUnavailable => {
            "Sorry, I couldn't open that {what}. I understand text and voice notes best."
        }
        FixedText::MediaNoCaption => {
            "Thanks for the {what}! I can't see {what}s yet. Tell me in words what you'd like \
to know, or send a voice note."
        }
        FixedText::CaptionPreface => "(I can't see {what}s yet, so I'm answering your caption.)",
        FixedText::Location => {
            "Thanks for sharing a location. I can't look at maps yet: tell me in words what \
you'd like to know about it."
        }
        FixedText::LocationNamed => {
            "Thanks for sharing the location of {place}. I can't look at maps yet: tell me in \
words what you'd like to know about it."
        }
        FixedText::Contacts => {
            "Thanks for the contact card. I can't do anything with contacts yet: I understand \
text and voice notes."
        }
        FixedText::TranscriptOnly => {
            "I write out voice notes: send me one and I'll reply with what it says."
        }
        FixedText::SummaryPreface => "📝 In short:",
        FixedText::LimitMinute => {
            "You're sending messages faster than I can answer them. Please wait a minute, \
then write again: I'll answer what you send after that."
        }
        FixedText::LimitDay => {
            "You've reached today's limit of messages, so I won't answer more today. You can \
write again after midnight (UTC)."
        }
        FixedText::LimitAudio => {
            "You've used today's time for voice notes, so I won't listen to more today. You \
can still write to me, and send voice notes again after midnight (UTC)."
        }
        FixedText::NotCovered => {
            "Sorry, I don't have information about that. I can help with questions about our \
services; for anything else, please contact us directly."
        }
        FixedText::HandoffAsked => {
            "I've asked a person from our team to take over: they'll answer you here, in this \
chat. Until then I'll stay quiet, and everything you write will reach them."
        }
        FixedText::HandoffUnavailable => {
            "Sorry, there is nobody from our team to hand you over to on this number. I'm \
happy to keep helping you myself."
        }
        FixedText::HandoffBack => "You're talking to the assistant again. How can I help?",
        FixedText::HandoffTimeout => {
            "Sorry, nobody from our team could answer you just now. You're talking to the \
assistant again: ask me anything, or write /human later to try again."
        }
        FixedText::VoiceOn => {
            "Done: I'll answer you with voice notes. Write /voice off to get text again."
        }
        FixedText::VoiceOff => "Done: I'll answer you in writing. Write /voice on for voice notes.",
        FixedText::StaffNotice => {
            "🙋 {what} asks for a person.\n\n{place}\n\nTo answer, reply to this message (swipe \
it): your words reach {what} from the business's number. Reply /bot to hand them back to the \
assistant."
        }
        FixedText::StaffForward => "💬 {what}: {place}\n\n(Reply to this message to answer.)",
        FixedText::StaffNotWaiting => {
            "That user is not waiting for a person any more: the assistant has the \
conversation. Nothing was sent."
        }
        FixedText::StaffBack => "Done: the assistant answers this user again.",
        FixedText::StaffUndelivered => {
            "Not delivered: this user last wrote more than 24 hours ago, and WhatsApp lets a \
business write freely only within 24 hours of the user's last message."
        }
        FixedText::StaffTemplateSent => {
            "Not delivered: this user last wrote more than 24 hours ago. They were sent the \
approved template asking them to write again; answer them once they do."
        }
        FixedText::StaffTextOnly => "Only text reaches users from here: nothing was sent.",
    }
}

fn es(text: FixedText) -> &'static str {
    match text {
        FixedText::Help => {
            "Hola, soy Remedios, un asistente con el que puedes hablar aquí.\n\n\
• Escríbeme o mándame una nota de voz: respondo a las dos.\n\
• Recuerdo nuestros mensajes recientes; envía /reset para que los olvide.\n\
• No puedo ver imágenes, vídeos ni documentos, abrir archivos ni hacer llamadas.\n\n\
Envía /help para ver esto otra vez."
        }
        FixedText::ResetDone => "Hecho: he olvidado nuestra conversación. ¿De qué quieres hablar?",
        FixedText::Apology => {
            "Lo siento, ahora no puedo responder: no logro comunicarme con mi máquina de \
pensar. Vuelve a enviar tu mensaje dentro de un rato, por favor."
        }
        FixedText::CannotAnswer => {
            "Lo siento, no pude responder a ese mensaje: mi máquina de pensar no pudo con él. \
¿Puedes decirlo con otras palabras, o más brevemente?"
        }
        FixedText::Misconfigured => {
            "Lo siento, ahora no puedo responder: mi máquina de pensar está mal configurada y \
ya hemos avisado a quienes la llevan. Vuelve a enviar tu mensaje más tarde, por favor."
        }
        FixedText::NoAnswer => {
            "Lo siento, no tengo respuesta para eso. ¿Puedes decirlo con otras palabras?"
        }
        FixedText::AudioUnsupported => {
            "Lo siento, no pude escuchar ese audio. ¿Puedes grabarlo otra vez como nota de \
voz, o escribirlo?"
        }
        FixedText::SilentAudio => {
            "No oí ninguna palabra en esa nota de voz. ¿Puedes grabarla otra vez, o escribirla?"
        }
        FixedText::Unsupported => {
            "Lo siento, todavía no puedo leer ese tipo de mensaje. Entiendo texto y notas de voz."
        }
        FixedText::MediaUnavailable => {
            "Lo siento, no pude abrir ese {what}. Entiendo mejor el texto y las notas de voz."
        }
        FixedText::MediaNoCaption => {
            "¡Gracias por el {what}! Todavía no puedo verlos. Cuéntame con palabras lo que \
quieres saber, o mándame una nota de voz."
        }
        FixedText::CaptionPreface => {
            "(Todavía no puedo ver el {what}, así que respondo a tu texto.)"
        }
        FixedText::Location => {
            "Gracias por compartir una ubicación. Todavía no puedo mirar mapas: cuéntame con \
palabras lo que quieres saber de ella."
        }
        FixedText::LocationNamed => {
            "Gracias por compartir la ubicación de {place}. Todavía no puedo mirar mapas: \
cuéntame con palabras lo que quieres saber de ella."
        }
        FixedText::Contacts => {
            "Gracias por la tarjeta de contacto. Todavía no puedo hacer nada con contactos: \
entiendo texto y notas de voz."
        }
        FixedText::TranscriptOnly => {
            "Escribo las notas de voz: mándame una y te respondo con lo que dice."
        }
        FixedText::SummaryPreface => "📝 En resumen:",
        FixedText::LimitMinute => {
            "Me estás enviando mensajes más rápido de lo que puedo responder. Espera un \
minuto y vuelve a escribir: responderé a lo que envíes después."
        }
        FixedText::LimitDay => {
            "Has llegado al límite de mensajes de hoy, así que no responderé más hoy. Puedes \
volver a escribir después de medianoche (UTC)."
        }
        FixedText::LimitAudio => {
            "Has usado el tiempo de notas de voz de hoy, así que no escucharé más hoy. Puedes \
seguir escribiéndome, y enviar notas de voz otra vez después de medianoche (UTC)."
        }
        FixedText::NotCovered => {
            "Lo siento, no tengo información sobre eso. Puedo ayudarte con preguntas sobre \
nuestros servicios; para cualquier otra cosa, contáctanos directamente."
        }
        FixedText::HandoffAsked => {
            "He pedido a una persona de nuestro equipo que te atienda: te responderá aquí, en \
este chat. Hasta entonces no diré nada, y todo lo que escribas le llegará."
        }
        FixedText::HandoffUnavailable => {
            "Lo siento, en este número no hay nadie de nuestro equipo a quien pasarte. Con \
gusto sigo ayudándote yo."
        }
        FixedText::HandoffBack => "Vuelves a hablar con el asistente. ¿En qué te ayudo?",
        FixedText::HandoffTimeout => {
            "Lo siento, nadie de nuestro equipo ha podido atenderte ahora. Vuelves a hablar \
con el asistente: pregúntame lo que quieras, o escribe /humano más tarde para intentarlo de \
nuevo."
        }
        FixedText::VoiceOn => {
            "Hecho: te responderé con notas de voz. Escribe /voz no para volver al texto."
        }
        FixedText::VoiceOff => {
            "Hecho: te responderé por escrito. Escribe /voz sí para notas de voz."
        }
        FixedText::StaffNotice => {
            "🙋 {what} pide hablar con una persona.\n\n{place}\n\nPara responder, contesta a \
este mensaje (deslízalo): tus palabras le llegan a {what} desde el número de la empresa. \
Contesta /bot para devolverle al asistente."
        }
        FixedText::StaffForward => {
            "💬 {what}: {place}\n\n(Contesta a este mensaje para responder.)"
        }
        FixedText::StaffNotWaiting => {
            "Esa persona ya no espera a nadie del equipo: el asistente lleva la conversación. \
No se ha enviado nada."
        }
        FixedText::StaffBack => "Hecho: el asistente vuelve a atender a esta persona.",
        FixedText::StaffUndelivered => {
            "No entregado: esta persona escribió por última vez hace más de 24 horas, y \
WhatsApp solo deja escribir libremente en las 24 horas siguientes a su último mensaje."
        }
        FixedText::StaffTemplateSent => {
            "No entregado: esta persona escribió por última vez hace más de 24 horas. Se le \
ha enviado la plantilla aprobada que le pide volver a escribir; respóndele cuando lo haga."
        }
        FixedText::StaffTextOnly => "Desde aquí solo llega texto: no se ha enviado nada.",
    }
}

/// A kind of file, as the texts name it.
pub fn file_word(what: &str, lang: Lang) -> &'static str {
    match (lang, what) {
        (Lang::En, "image") => "image",
        (Lang::En, "video") => "video",
        (Lang::En, "document") => "document",
        (Lang::En, "sticker") => "sticker",
        (Lang::En, _) => "file",
        (Lang::Es, "image") => "archivo de imagen",
        (Lang::Es, "video") => "vídeo",
        (Lang::Es, "document") => "documento",
        (Lang::Es, "sticker") => "sticker",
        (Lang::Es, _) => "archivo",
    }
}

/// The deployer's rewordings: one variable per fixed text and language.
pub const TEXT_OVERRIDES: Family = Family {
    pattern: "TEXT_<NAME>_<LANG>",
    prefix: "TEXT_",
    doc: "replaces one fixed text in one language (`TEXT_RESET_DONE_ES`)",
};

/// The fixed texts of a deployment: Remedios's own, with the deployer's overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Texts {
    overrides: HashMap<(FixedText, Lang), String>,
}

impl Texts {
    /// Reads every `TEXT_<NAME>_<LANG>` that is set (an empty one keeps Remedios's own).
    pub fn from_env<V: Vars>(env: &Env<V>) -> Result<Self, ConfigError> {
        let mut overrides = HashMap::new();
        for text in FixedText::ALL {
            for lang in Lang::ALL {
                let var = format!("{}{}_{}", TEXT_OVERRIDES.prefix, text.name(), lang.suffix());
                if let Some(value) = env.optional(&var).filter(|v| !v.trim().is_empty()) {
                    overrides.insert((text, lang), value);
                }
            }
        }
        Ok(Texts { overrides })
    }

    /// `text` in `lang`.
    pub fn get(&self, text: FixedText, lang: Lang) -> &str {
        self.overrides
            .get(&(text, lang))
            .map(String::as_str)
            .unwrap_or_else(|| text.default_text(lang))
    }

    /// `text` in `lang` with its `{what}` and `{place}` filled in.
    pub fn render(&self, text: FixedText, lang: Lang, what: &str, place: &str) -> String {
        self.fill(text, lang, file_word(what, lang), place)
    }

    /// `text` in `lang` with `{what}` and `{place}` filled in as given.
    pub fn fill(&self, text: FixedText, lang: Lang, what: &str, place: &str) -> String {
        self.get(text, lang)
            .replace("{what}", what)
            .replace("{place}", place)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_exists_in_every_language_and_differs_between_them() {
        for text in FixedText::ALL {
            let en = text.default_text(Lang::En);
            let es = text.default_text(Lang::Es);
            assert!(!en.trim().is_empty() && !es.trim().is_empty(), "{text:?}");
            assert_ne!(en, es, "{text:?}");
            assert_eq!(
                en.contains("{what}"),
                es.contains("{what}"),
                "{text:?} fills the same blanks"
            );
            assert_eq!(en.contains("{place}"), es.contains("{place}"), "{text:?}");
        }
    }

    #[test]
    fn languages_come_from_codes_and_from_text_long_enough_to_tell() {
        assert_eq!(Lang::from_code("es"), Some(Lang::Es));
        assert_eq!(Lang::from_code("es-MX"), Some(Lang::Es));
        assert_eq!(Lang::from_code("EN"), Some(Lang::En));
        assert_eq!(Lang::from_code("de"), None);
        assert_eq!(
            Lang::of_text("¿Puedes decirme a qué hora abre la farmacia mañana por la mañana?"),
            Some(Lang::Es)
        );
        assert_eq!(
            Lang::of_text("Could you tell me what time the pharmacy opens tomorrow morning?"),
            Some(Lang::En)
        );
        assert_eq!(Lang::of_text("/reset"), None);
        assert_eq!(
            Lang::of_text("Je voudrais savoir à quelle heure ouvre la pharmacie demain matin."),
            None,
            "plainly French: no Spanish or English text pretends to fit"
        );
    }

    #[test]
    fn a_deployer_replaces_one_text_in_one_language() {
        let env = Env(HashMap::from([(
            "TEXT_RESET_DONE_ES".to_owned(),
            "Listo, empezamos de cero.".to_owned(),
        )]));
        let texts = Texts::from_env(&env).expect("texts");
        assert_eq!(
            texts.get(FixedText::ResetDone, Lang::Es),
            "Listo, empezamos de cero."
        );
        assert_eq!(
            texts.get(FixedText::ResetDone, Lang::En),
            FixedText::ResetDone.default_text(Lang::En)
        );
        let empty = Env(HashMap::from([("TEXT_HELP_EN".to_owned(), " ".to_owned())]));
        let texts_kept = Texts::from_env(&empty).expect("texts");
        assert_eq!(
            texts_kept.get(FixedText::Help, Lang::En),
            FixedText::Help.default_text(Lang::En)
        );
        assert_eq!(
            texts.render(FixedText::MediaUnavailable, Lang::Es, "video", ""),
            "Lo siento, no pude abrir ese vídeo. Entiendo mejor el texto y las notas de voz."
        );
    }
}
