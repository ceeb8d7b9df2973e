//! A model's own chat template: the Jinja source from `tokenizer_config.json` (or
//! `chat_template.jinja`) of an HF folder, or `tokenizer.chat_template` of a GGUF, rendered by
//! minijinja configured as transformers' `apply_chat_template` configures Jinja2
//! (`trim_blocks`, `lstrip_blocks`, loop controls, Python string methods, `raise_exception`).
//! A model without one is prompted with plain ChatML.

use crate::tokenizer::Message;
use minijinja::{Environment, ErrorKind, context};

/// Plain ChatML, for models that carry no template.
pub const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// The template's name inside its environment.
const NAME: &str = "chat";

/// A compiled chat template with the special-token strings it may print.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
}

impl Clone for ChatTemplate {
    fn clone(&self) -> Self {
        Self::new(&self.source, &self.bos_token, &self.eos_token).expect("a template that compiled once compiles again")
    }
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChatTemplate({} bytes)", self.source.len())
    }
}

impl ChatTemplate {
    /// Compiles `source`, and renders a system + user and a user-only chat to check that it
    /// can prompt the model as selfemo does; an error says what the template rejected.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_syntax(minijinja::syntax::SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build().expect("the default delimiters are valid"));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
        });
        env.add_template_owned(NAME, source.to_string()).map_err(|e| format!("chat template does not compile: {e:#}"))?;
        let template = Self { env, source: source.to_string(), bos_token: bos_token.to_string(), eos_token: eos_token.to_string() };
        for probe in [vec![Message::new("system", "s"), Message::new("user", "u")], vec![Message::new("user", "u")]] {
            template.render(&probe, true).map_err(|e| format!("chat template fails on a {}-message chat: {e}", probe.len()))?;
        }
        Ok(template)
    }

    /// Plain ChatML (no default system prompt).
    pub fn chatml() -> Self {
        Self::new(CHATML, "", "<|im_end|>").expect("ChatML compiles")
    }

    /// The Jinja source, as written into an export.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The text of `messages`, followed by the assistant's turn opening when
    /// `add_generation_prompt`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, String> {
        let messages: Vec<_> = messages.iter().map(|m| context! { role => &m.role, content => &m.content }).collect();
        let template = self.env.get_template(NAME).expect("added at construction");
        template.render(context! { messages, add_generation_prompt, bos_token => &self.bos_token, eos_token => &self.eos_token }).map_err(|e| format!("{e:#}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat() -> Vec<Message> {
        vec![Message::new("system", "Be brief."), Message::new("user", "Hi"), Message::new("assistant", "Hello."), Message::new("user", "Bye")]
    }

    #[test]
    fn chatml_renders_each_turn_and_opens_the_assistants() {
        let text = ChatTemplate::chatml().render(&chat(), true).unwrap();
        let want = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n";
        assert_eq!(text, want);
        assert_eq!(ChatTemplate::chatml().render(&chat(), false).unwrap(), want.strip_suffix("<|im_start|>assistant\n").unwrap());
    }

    #[test]
    fn hf_jinja_features_render_as_transformers_does() {
        // trim_blocks/lstrip_blocks, Python string methods, loop.first, slicing, namespace.
        let source = "{%- set ns = namespace(n=0) %}\n{% for m in messages[::-1] %}\n  {% set ns.n = ns.n + 1 %}\n{% endfor %}\n{{ bos_token }}{{ ns.n }}|{% for m in messages %}{% if loop.first %}[{% endif %}{{ m.content.strip().lower() }}{% if m.content.startswith(' ') %}*{% endif %};{% endfor %}";
        let t = ChatTemplate::new(source, "<s>", "</s>").unwrap();
        let text = t.render(&[Message::new("user", " Hi "), Message::new("assistant", "OK")], false).unwrap();
        assert_eq!(text, "<s>2|[hi*;ok;");
    }

    #[test]
    fn a_template_that_raises_on_selfemos_chats_is_refused_with_its_message() {
        let source = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}";
        let err = ChatTemplate::new(source, "", "").unwrap_err();
        assert!(err.contains("System role not supported"), "{err}");
        let err = ChatTemplate::new("{% for %}", "", "").unwrap_err();
        assert!(err.contains("does not compile"), "{err}");
    }
}
