# The Logstash parts the pipeline's checks run outside Logstash (tests/elk/elkmodel.py drives it):
#
# One JSON request per line on stdin, one JSON answer per line on stdout:
#   {"op": "decode", "body": "<raw body>", "codec": {...}, "properties": {...}|null}
#       -> {"events": [<event>...]}   the json (or plain) codec + the rabbitmq input's decoration
#                                     (properties null: none, as the redis input)
#   {"op": "filter", "id": "...", "init": "...", "code": "...", "event": <event>}
#       -> {"events": [<event>]}      one ruby filter, its init (once) and code verbatim
#
# <event> is {"data": {...}, "metadata": {...}} with @timestamp as its ISO-8601 string.
#
# LogStash::Event below behaves like org.logstash.Event (logstash-core 8.x) wherever a filter can
# tell: the constructor adds "@version" => "1" when absent, takes @metadata out of the data,
# parses @timestamp into a LogStash::Timestamp (unparsable: tag _timestampparsefailure, raw value
# in _@timestamp, @timestamp = now); field references [a][b]; get/to_hash return copies; to_hash
# leaves @metadata out; set through a scalar raises as Logstash does; tag appends to `tags`.
require "json"
require "time"

module LogStash
  # Logstash's Timestamp: an instant, printed like java.time's ISO_INSTANT (fraction in groups
  # of 3 digits, none when zero) as Logstash 8 serialises it.
  class Timestamp
    include Comparable
    attr_reader :time

    def initialize(time = Time.now)
      @time = time.utc
    end

    def self.now
      new(Time.now)
    end

    # Logstash parses ISO-8601 (with or without offset/fraction); anything else is a failure.
    def self.parse_iso8601(value)
      raise ArgumentError, "not a string: #{value.inspect}" unless value.is_a?(String)
      unless value =~ /\A\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?\z/
        raise ArgumentError, "invalid timestamp #{value.inspect}"
      end
      new(Time.iso8601(value.sub(" ", "T").then { |v| v =~ /(Z|[+-]\d{2}:?\d{2})\z/ ? v : v + "Z" }))
    rescue ArgumentError
      raise ArgumentError, "invalid timestamp #{value.inspect}"
    end

    def to_iso8601
      nsec = @time.nsec
      frac = if nsec.zero? then ""
             elsif (nsec % 1_000_000).zero? then format(".%03d", nsec / 1_000_000)
             elsif (nsec % 1_000).zero? then format(".%06d", nsec / 1_000)
             else format(".%09d", nsec)
             end
      @time.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"
    end
    alias to_s to_iso8601

    def to_json(*args)
      to_iso8601.to_json(*args)
    end

    def <=>(other)
      other.is_a?(Timestamp) ? @time <=> other.time : nil
    end
  end

  class Event
    TIMESTAMP = "@timestamp"
    VERSION = "@version"
    METADATA = "@metadata"
    TIMESTAMP_FAILURE_TAG = "_timestampparsefailure"
    TIMESTAMP_FAILURE_FIELD = "_@timestamp"

    # org.logstash.Event(Map): @version, @metadata apart, @timestamp parsed.
    def initialize(data = {})
      @data = deep_copy(data)
      @data[VERSION] = "1" unless @data.key?(VERSION)
      meta = @data.delete(METADATA)
      @metadata = meta.is_a?(Hash) ? meta : {}
      provided = @data.delete(TIMESTAMP)
      parsed = init_timestamp(provided)
      @data[TIMESTAMP] = parsed || Timestamp.now
      if parsed.nil?
        tag(TIMESTAMP_FAILURE_TAG)
        @data[TIMESTAMP_FAILURE_FIELD] = provided
      end
    end

    # An event as it was between two filters (no constructor defaults applied again).
    def self.restore(data, metadata)
      event = allocate
      event.instance_variable_set(:@data, data)
      event.instance_variable_set(:@metadata, metadata)
      data[TIMESTAMP] = Timestamp.parse_iso8601(data[TIMESTAMP]) if data[TIMESTAMP].is_a?(String)
      event
    end

    def get(ref)
      root, path = resolve(ref)
      cur = root
      path.each do |k|
        return nil unless cur.is_a?(Hash) && cur.key?(k)
        cur = cur[k]
      end
      deep_copy(cur)
    end

    def include?(ref)
      root, path = resolve(ref)
      return true if path.empty?
      *parents, last = path
      cur = root
      parents.each do |k|
        return false unless cur.is_a?(Hash) && cur.key?(k)
        cur = cur[k]
      end
      cur.is_a?(Hash) && cur.key?(last)
    end

    def set(ref, value)
      root, path = resolve(ref)
      raise ArgumentError, "cannot replace @metadata" if path.empty?
      if path == [TIMESTAMP] && root.equal?(@data)
        raise TypeError, "wrong argument type #{value.class} (expected LogStash::Timestamp)" unless value.is_a?(Timestamp)
      end
      *parents, last = path
      cur = root
      parents.each do |k|
        cur[k] = {} unless cur.key?(k) && !cur[k].nil?
        unless cur[k].is_a?(Hash)
          # org.logstash.Accessors: InvalidFieldSetException
          raise RuntimeError, "Could not set field '#{last}' on object '#{cur[k]}' to value '#{value}'." \
                              "This is probably due to trying to set a field like [foo][bar] = someValue" \
                              "when [foo] is not either a map or a string"
        end
        cur = cur[k]
      end
      cur[last] = deep_copy(value)
    end

    def remove(ref)
      root, path = resolve(ref)
      *parents, last = path
      cur = root
      parents.each do |k|
        return nil unless cur.is_a?(Hash) && cur.key?(k)
        cur = cur[k]
      end
      cur.is_a?(Hash) ? cur.delete(last) : nil
    end

    def to_hash
      deep_copy(@data)
    end

    def to_hash_with_metadata
      to_hash.merge(METADATA => deep_copy(@metadata))
    end

    def tag(value)
      tags = @data["tags"]
      if tags.nil?
        @data["tags"] = [value]
      elsif tags.is_a?(Array)
        tags << value unless tags.include?(value)
      else
        @data["tags"] = [tags, value] unless tags == value
      end
    end

    def sprintf(format)
      format.gsub(/%\{([^}]+)\}/) do
        v = get(Regexp.last_match(1))
        v.nil? ? Regexp.last_match(0) : (v.is_a?(Hash) || v.is_a?(Array) ? v.to_json : v.to_s)
      end
    end

    def serialize
      { "data" => @data, "metadata" => @metadata }
    end

    private

    def init_timestamp(value)
      return Timestamp.now if value.nil?
      return value if value.is_a?(Timestamp)
      Timestamp.parse_iso8601(value)
    rescue ArgumentError
      nil
    end

    # [a][b] / a / [@metadata][x] -> (root hash, path inside it)
    def resolve(ref)
      parts = if ref.start_with?("[")
                found = ref.scan(/\[([^\[\]]+)\]/).flatten
                raise ArgumentError, "Invalid FieldReference: `#{ref}`" if found.map { |p| "[#{p}]" }.join != ref
                found
              else
                raise ArgumentError, "Invalid FieldReference: `#{ref}`" if ref.include?("[") || ref.include?("]")
                [ref]
              end
      parts.first == METADATA ? [@metadata, parts.drop(1)] : [@data, parts]
    end

    def deep_copy(value)
      case value
      when Hash then value.each_with_object({}) { |(k, v), h| h[k] = deep_copy(v) }
      when Array then value.map { |v| deep_copy(v) }
      when String then value.dup
      else value
      end
    end
  end

  # logstash-codec-json 3.1 decode (no charset conversion: the crate's bodies are UTF-8).
  module JsonCodec
    FAILURE_TAG = "_jsonparsefailure"

    # `original_field`: [event][original] in ECS mode (v1/v8), nil with ecs_compatibility disabled.
    # `target`: the codec's target option (nil: the document is the event's root).
    def self.decode(body, original_field:, target:)
      decoded = JSON.parse(body)
      events = case decoded
               when Array then decoded.map { |item| new_event(item, target) }
               when Hash then [new_event(decoded, target)]
               else raise JSON::ParserError, "not an object or array: #{body[0, 40]}"
               end
      if events.size == 1 && original_field && !events.first.include?(original_field)
        events.first.set(original_field, body.dup.freeze)
      end
      events
    rescue StandardError
      # The whole body, valid elements included, becomes one plain-text event.
      [Event.new("message" => body, "tags" => [FAILURE_TAG])]
    end

    def self.new_event(item, target)
      raise JSON::ParserError, "array element is not an object: #{item.inspect}" unless item.is_a?(Hash)
      return Event.new(item) if target.nil?
      event = Event.new
      event.set(target, item)
      event
    end
  end
end

module LogStash
  # logstash-codec-plain 3.1 decode: the whole body is `message` (and [event][original] in ECS mode).
  module PlainCodec
    def self.decode(body, original_field:)
      event = Event.new("message" => body)
      event.set(original_field, body.dup.freeze) if original_field
      [event]
    end
  end
end

# logstash-integration-rabbitmq 7.x input: decorate(event, metadata, data) after the codec.
def rabbitmq_decorate(event, properties)
  return if properties.nil?
  event.set("[@metadata][rabbitmq_headers]", {})
  event.set("[@metadata][rabbitmq_properties]", properties)
end

# One filter instance per ruby plugin (its init runs once, as at register), as in Logstash.
FILTERS = {}

def run_filter(input)
  event = LogStash::Event.restore(input.fetch("event").fetch("data"), input.fetch("event").fetch("metadata"))
  key = [input["id"], input["init"], input.fetch("code")]
  code = FILTERS[key] ||= begin
    filter = Object.new
    filter.instance_eval(input["init"], "(ruby filter init)") if input["init"]
    filter.instance_eval("lambda { |event, &new_event_block| #{input.fetch('code')} }", "(ruby filter code)")
  end
  begin
    code.call(event)
  rescue Exception => e # logstash-filter-ruby: logs and tags, the event goes on
    raise if e.is_a?(SystemExit) || e.is_a?(NoMemoryError)
    event.tag(input["tag_on_exception"] || "_rubyexception")
    warn "ruby filter exception: #{e.class}: #{e.message}"
  end
  [event]
end

def handle(input)
  case input.fetch("op")
  when "decode"
    codec = input.fetch("codec")
    decoded = if codec["name"] == "plain"
                LogStash::PlainCodec.decode(input.fetch("body"), original_field: codec["original_field"])
              else
                LogStash::JsonCodec.decode(input.fetch("body"), original_field: codec["original_field"],
                                                                target: codec["target"])
              end
    decoded.each { |e| rabbitmq_decorate(e, input["properties"]) }
    decoded
  when "filter" then run_filter(input)
  else raise ArgumentError, "unknown op #{input['op']}"
  end
end

# One request per line on stdin, one answer per line on stdout, until stdin closes.
$stdout.sync = true
$stdin.each_line do |line|
  next if line.strip.empty?
  puts JSON.generate({ "events" => handle(JSON.parse(line)).map(&:serialize) })
end
