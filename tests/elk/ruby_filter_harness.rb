# Runs the `init` and `code` of one Logstash ruby filter on one event, outside Logstash.
#
# stdin:  {"init": "...", "code": "...", "event": {...}, "metadata": {...}}
# stdout: {"event": {...}, "metadata": {...}}
#
# `event` is a stand-in for the Logstash Event API the snippets use (get, set, remove,
# include?, to_hash with [a][b] field references). Like Logstash it returns copies from get and
# to_hash, keeps @metadata out of to_hash, and refuses to set [a][b] while [a] is a scalar.
require "json"

class ShimEvent
  attr_reader :data, :metadata

  def initialize(data, metadata)
    @data = data
    @metadata = metadata
  end

  def get(ref)
    cur = root(ref)
    path(ref).each do |k|
      return nil unless cur.is_a?(Hash) && cur.key?(k)
      cur = cur[k]
    end
    deep_copy(cur)
  end

  def include?(ref)
    *parents, last = path(ref)
    cur = root(ref)
    parents.each do |k|
      return false unless cur.is_a?(Hash) && cur.key?(k)
      cur = cur[k]
    end
    cur.is_a?(Hash) && cur.key?(last)
  end

  def set(ref, value)
    *parents, last = path(ref)
    cur = root(ref)
    parents.each do |k|
      cur[k] = {} unless cur.key?(k)
      raise ArgumentError, "cannot set #{ref}: [#{k}] is #{cur[k].inspect}" unless cur[k].is_a?(Hash)
      cur = cur[k]
    end
    cur[last] = deep_copy(value)
  end

  def remove(ref)
    *parents, last = path(ref)
    cur = root(ref)
    parents.each do |k|
      return nil unless cur.is_a?(Hash) && cur.key?(k)
      cur = cur[k]
    end
    cur.is_a?(Hash) ? cur.delete(last) : nil
  end

  def to_hash
    deep_copy(@data)
  end

  private

  def path(ref)
    parts = ref.start_with?("[") ? ref.scan(/\[([^\[\]]+)\]/).flatten : [ref]
    parts.first == "@metadata" ? parts.drop(1) : parts
  end

  def root(ref)
    ref.start_with?("[@metadata]") ? @metadata : @data
  end

  def deep_copy(value)
    Marshal.load(Marshal.dump(value))
  end
end

input = JSON.parse($stdin.read)
event = ShimEvent.new(input.fetch("event"), input.fetch("metadata"))
filter = Object.new
filter.instance_eval(input["init"]) if input["init"]
filter.instance_eval("lambda { |event| #{input.fetch('code')} }").call(event)
puts JSON.generate({ "event" => event.data, "metadata" => event.metadata })
